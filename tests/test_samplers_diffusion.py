"""Noise schedules, the forward process, samplers and the likelihood bound against
analytic answers.

The oracle: when the data is N(mu, s^2 I), the optimal denoiser is known in closed form
(z = alpha x + sigma eps is Gaussian, so E[x | z] and E[eps | z] are linear in z).
Plugged into the samplers it must reproduce N(mu, s^2), and plugged into the bound it
must give the exact negative log-density (up to Monte Carlo error).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab import GenlabError
from genlab.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverPP2M,
    GaussianDiffusion,
    Prediction,
    check_guidance,
    classifier_free_guidance,
    ddim_invert,
    make_sampler,
    make_schedule,
    q_sample,
)
from genlab.diffusion.schedules import alpha_sigma_from_logsnr

MU, S = 0.3, 0.5


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def exact_denoiser(z: torch.Tensor, logsnr: float) -> Prediction:
    """E[x | z] and E[eps | z] for x ~ N(MU, S^2 I)."""
    alpha, sigma = (float(v) for v in alpha_sigma_from_logsnr(torch.tensor(logsnr, dtype=torch.float64)))
    var = alpha**2 * S**2 + sigma**2
    r = z - alpha * MU
    return Prediction(x0=MU + alpha * S**2 / var * r, eps=sigma / var * r)


# ---------------------------------------------------------------------- schedules
def test_cosine_schedule_follows_nichol_dhariwal():
    sched = make_schedule("cosine")
    t = np.linspace(0.001, 0.99, 50)
    s = 0.008
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    expected = f / np.cos(s / (1 + s) * np.pi / 2) ** 2
    alpha, sigma = sched.alpha_sigma(torch.tensor(t, dtype=torch.float64))
    np.testing.assert_allclose(alpha.numpy() ** 2, expected, rtol=1e-9)
    np.testing.assert_allclose(alpha.numpy() ** 2 + sigma.numpy() ** 2, 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_alphas_cumprod_are_monotone_with_the_right_endpoints(name):
    sched = make_schedule(name)
    ac = sched.alphas_cumprod(1000)
    assert ac.shape == (1000,) and torch.all(ac[1:] < ac[:-1])
    assert 0.999 < float(ac[0]) < 1.0  # one step of noise: nearly clean
    betas = sched.betas(1000)
    assert torch.all((betas > 0) & (betas < 1))
    torch.testing.assert_close(torch.cumprod(1 - betas, 0), ac)
    if name == "linear":  # Ho et al.: betas from 1e-4 to 0.02 over 1000 steps
        discrete = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
        assert float(ac[0]) == pytest.approx(discrete[0], rel=1e-4)
        assert float(ac[-1]) == pytest.approx(discrete[-1], rel=0.1)  # first-order agreement
        assert float(betas[0]) == pytest.approx(1e-4, rel=0.2) and float(betas[-1]) == pytest.approx(0.02, rel=0.05)
    else:  # pure noise at t = 1 (clipped at log-SNR -15)
        assert float(ac[-1]) == pytest.approx(1 / (1 + math.exp(15)), rel=1e-6)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_time_inverts_logsnr(name):
    sched = make_schedule(name)
    t = torch.linspace(0.01, 0.95, 40, dtype=torch.float64)
    lam = sched.logsnr(t)
    assert torch.all(lam[1:] < lam[:-1])
    torch.testing.assert_close(sched.time(lam), t, rtol=1e-7, atol=1e-9)
    assert (
        float(sched.logsnr(0.0)) == sched.logsnr_max and float(make_schedule("cosine").logsnr(1.0)) == sched.logsnr_min
    )


def test_q_sample_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([-0.8, 0.0, 0.6])
    lam = torch.tensor(0.7)
    noise = torch.randn(200_000, 3, generator=g)
    z = q_sample(x.expand(200_000, 3), lam, noise)
    alpha, sigma = alpha_sigma_from_logsnr(lam)
    torch.testing.assert_close(z.mean(0), alpha * x, atol=0.01, rtol=0)
    torch.testing.assert_close(z.var(0), sigma**2 * torch.ones(3), atol=0.01, rtol=0)
    # per-row levels broadcast over the other dimensions
    rows = q_sample(torch.ones(2, 4, 4), torch.tensor([-20.0, 20.0]), torch.zeros(2, 4, 4))
    assert rows[0].abs().max() < 1e-4 and torch.allclose(rows[1], torch.ones(4, 4), atol=1e-4)


# ---------------------------------------------------------------------- samplers
def _moments(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std())


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize(
    "name, steps, eta, spacing, std_tol",
    [
        ("ddpm", 1000, None, None, 0.02),
        ("ddim", 500, 0.0, None, 0.02),
        ("ddim", 1000, 1.0, None, 0.02),
        ("dpm++", 40, None, "time", 0.02),
        ("dpm++", 50, None, "logsnr", 0.02),
    ],
)
def test_samplers_reproduce_gaussian_data(schedule, name, steps, eta, spacing, std_tol):
    sampler = make_sampler(name, make_schedule(schedule), steps, eta=eta, spacing=spacing)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    mean, std = _moments(sampler.sample(exact_denoiser, z, generator=g))
    assert mean == pytest.approx(MU, abs=0.01)  # 40,000 draws: standard error 0.0025 (mean), 0.002 (std)
    assert std == pytest.approx(S, rel=std_tol)


def test_few_step_solver_beats_ddim_at_equal_cost():
    sched = make_schedule("cosine")
    z = torch.randn(20000, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ddim = _moments(DDIMSampler(sched, 15).sample(exact_denoiser, z))[1]
    dpm = _moments(DPMSolverPP2M(sched, 15, spacing="time").sample(exact_denoiser, z))[1]
    assert abs(dpm - S) < 0.02 < abs(ddim - S)


def test_ddim_eta_one_is_ancestral_sampling():
    """Same grid, same generator: DDIM(eta=1) and DDPM draw the same samples."""
    sched = make_schedule("cosine")
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(3))
    a = DDPMSampler(sched, 40).sample(exact_denoiser, z, generator=torch.Generator().manual_seed(4))
    b = DDIMSampler(sched, 40, eta=1.0).sample(exact_denoiser, z, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    c = DDIMSampler(sched, 40, eta=0.0).sample(exact_denoiser, z, generator=torch.Generator().manual_seed(4))
    assert (a - c).abs().max() > 0.05  # eta = 0 is a different (deterministic) chain
    again = DDIMSampler(sched, 40, eta=0.0).sample(exact_denoiser, z, generator=torch.Generator().manual_seed(99))
    torch.testing.assert_close(c, again)  # ... that ignores the generator


def test_ddim_inversion_round_trip():
    sched = make_schedule("cosine")
    x0 = MU + S * torch.randn(500, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z1 = ddim_invert(exact_denoiser, x0, sched, steps=200)
    assert _moments(z1)[1] == pytest.approx(1.0, abs=0.05)  # the inverted latents look like N(0, I)
    back = DDIMSampler(sched, 200).sample(exact_denoiser, z1)
    assert float((back - x0).abs().max()) < 0.05


def test_partial_start_and_callback():
    """SDEdit-style start at t < 1 and a per-step callback (inpainting pastes known values)."""
    sched = make_schedule("cosine")
    sampler = DDIMSampler(sched, 10)
    grid = sampler.logsnr_grid(0.5)
    assert len(grid) == 11 and grid[0] == pytest.approx(float(sched.logsnr(0.5))) and math.isinf(grid[-1])
    seen = []

    def paste(z, logsnr):
        seen.append(logsnr)
        z = z.clone()
        z[:, 0] = 0.0
        return z

    out = sampler.sample(exact_denoiser, torch.randn(5, 2), t_start=0.5, callback=paste)
    assert len(seen) == 9 and seen == sorted(seen)
    assert torch.allclose(out[:, 0], torch.full((5,), MU) * 1.0, atol=0.3)


def test_classifier_free_guidance_is_linear():
    u, c = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(classifier_free_guidance(u, c, 0.0), u)
    assert torch.equal(classifier_free_guidance(u, c, 1.0), c)
    torch.testing.assert_close(classifier_free_guidance(u, c, 3.0), u + 3.0 * (c - u))


def test_bad_sampler_settings_name_the_argument():
    sched = make_schedule("cosine")
    with pytest.raises(GenlabError, match="sampler='euler' is not valid"):
        make_sampler("euler", sched)
    with pytest.raises(GenlabError, match="steps=0 must be >= 1"):
        make_sampler("ddim", sched, 0)
    with pytest.raises(GenlabError, match="eta"):
        make_sampler("dpm++", sched, 10, eta=0.5)
    with pytest.raises(GenlabError, match="eta=-1"):
        make_sampler("ddim", sched, 10, eta=-1.0)
    with pytest.raises(GenlabError, match="guidance=-1"):
        check_guidance(-1.0)
    with pytest.raises(GenlabError, match="t_start"):
        DDIMSampler(sched, 5).logsnr_grid(1.5)
    with pytest.raises(GenlabError, match="schedule='quadratic'"):
        make_schedule("quadratic")


# ---------------------------------------------------------------------- likelihood bound
class ExactNetwork(nn.Module):
    """The optimal eps/v prediction for N(MU, S^2 I) data, as a network of (z, noise level)."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction
        self.schedule = make_schedule("cosine")

    def forward(self, z, level):
        lam = self.schedule.logsnr_max - level * (self.schedule.logsnr_max - self.schedule.logsnr_min)
        alpha, sigma = (v.view(-1, 1) for v in alpha_sigma_from_logsnr(lam.double()))
        var = alpha**2 * S**2 + sigma**2
        r = z.double() - alpha * MU
        x0, eps = MU + alpha * S**2 / var * r, sigma / var * r
        return (alpha * eps - sigma * x0 if self.prediction == "v" else eps).to(z.dtype)


class ZeroNetwork(nn.Module):
    def forward(self, z, level):
        return torch.zeros_like(z)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_bound_of_the_exact_denoiser_is_the_true_log_density(prediction):
    diffusion = GaussianDiffusion(ExactNetwork(prediction), prediction=prediction)
    x = MU + S * torch.randn(3000, 3, generator=torch.Generator().manual_seed(6))
    nelbo = diffusion.negative_elbo(x, n_points=16, generator=torch.Generator().manual_seed(7))
    true_nll = (0.5 * ((x.double() - MU) / S) ** 2 + math.log(S) + 0.5 * math.log(2 * math.pi)).sum(1)
    gap = nelbo - true_nll
    assert abs(float(gap.mean())) < 4 * float(gap.std()) / math.sqrt(len(gap)) + 0.02
    again = diffusion.negative_elbo(x, n_points=16, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(nelbo, again, rtol=0, atol=0)
    # a worse denoiser (a zero output: eps_hat = 0 or v_hat = 0) gives a looser bound
    diffusion.denoiser = ZeroNetwork()
    worse = diffusion.negative_elbo(x, n_points=16, generator=torch.Generator().manual_seed(7))
    assert float(worse.mean()) > float(nelbo.mean()) + 1.0


# ---------------------------------------------------------------------- clean pixels
def _lattice_oracle(images_x: torch.Tensor):
    """The exact denoiser for data uniform over a few fixed images (model space, (K, D)):
    posterior weights softmax(-||z - alpha x_k||^2 / 2 sigma^2), x0 = their weighted mean."""

    def denoise(z: torch.Tensor, logsnr: float) -> Prediction:
        alpha, sigma = (float(v) for v in alpha_sigma_from_logsnr(torch.tensor(logsnr, dtype=torch.float64)))
        d2 = torch.cdist(z.flatten(1), alpha * images_x) ** 2
        w = torch.softmax(-d2 / (2 * sigma**2), dim=1)
        x0 = (w @ images_x).reshape(z.shape)
        return Prediction(x0=x0, eps=(z - alpha * x0) / sigma)

    return denoise


@pytest.mark.parametrize("space", ["linear", "histogram"])
@pytest.mark.parametrize("name, steps", [("ddpm", 200), ("ddim", 20), ("dpm++", 10)])
def test_exact_denoiser_gives_exactly_clean_backgrounds(name, steps, space):
    """Grey haze is not made by the sampler or the uint8 mapping: with the exact denoiser of
    images whose background is exactly 0, every sampler's final denoised output maps back
    to exactly those pixels (no value 1-7 anywhere), in either data space."""
    from genlab.diffusion.pixel_space import PixelSpace, histogram_edges
    from genlab.likelihood import dequantize, quantize

    g = torch.Generator().manual_seed(0)
    images = torch.zeros(4, 1, 6, 6, dtype=torch.uint8)
    images[:, :, 1:5, 2:4] = torch.randint(16, 256, (4, 1, 4, 2), generator=g, dtype=torch.uint8)
    pixel_space = PixelSpace(histogram_edges(images) if space == "histogram" else None)
    x = pixel_space.to_data(dequantize(images, noise=False, dtype=torch.float64)).flatten(1)
    sampler = make_sampler(name, make_schedule("cosine"), steps)
    z = torch.randn(300, 1, 6, 6, generator=g, dtype=torch.float64)
    out = sampler.sample(_lattice_oracle(x), z, generator=g)
    pixels = quantize(pixel_space.to_unit(out))
    assert ((pixels >= 1) & (pixels <= 7)).sum() == 0
    # every sample is one of the four images, exactly
    match = (pixels.flatten(1)[:, None, :] == images.flatten(1)[None]).all(-1).any(1)
    assert bool(match.all())
