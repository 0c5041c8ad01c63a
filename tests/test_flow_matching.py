"""``flow-matching``: the ODE solvers and the Hutchinson change-of-variables likelihood against
a linear velocity field with a known Gaussian density, then the model end to end (tiny)."""

import math

import numpy as np
import pytest
import torch

import genlab
from genlab import GenlabError
from genlab.models import make_model
from genlab.models.flow_matching import _log_density_hutchinson, integrate

from .conftest import own_and_swapped_caption_losses
from .markers import needs_text


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_field(a):
    return lambda x, t: torch.einsum("ij,bjhw->bihw", a, x)


def test_solvers_integrate_a_linear_ode():
    g = torch.Generator().manual_seed(0)
    a = 0.5 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    x0 = torch.randn(4, 3, 1, 1, generator=g, dtype=torch.float64)
    exact = torch.einsum("ij,bjhw->bihw", torch.linalg.matrix_exp(a), x0)
    err_euler = float((integrate(linear_field(a), x0, 50, "euler") - exact).abs().max())
    err_heun = float((integrate(linear_field(a), x0, 50, "heun") - exact).abs().max())
    assert err_heun < 1e-4 and err_euler < 3e-2 and err_heun < err_euler / 50


def gaussian_data_velocity(mean: float, std: float):
    """The exact flow-matching velocity E[x1 - x0 | x_t] for data x1 ~ N(mean, std²) per
    dimension and noise x0 ~ N(0, 1) on x_t = t x1 + (1 - t) x0. Its ODE maps x0 to
    mean + std x0 exactly (a Gaussian's monotone transport is affine)."""

    def v(x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1)))
        var = t * t * std**2 + (1 - t) ** 2
        centred = x - t * mean
        x1_hat = mean + t * std**2 / var * centred
        x0_hat = (1 - t) / var * centred
        return x1_hat - x0_hat

    return v


def test_dpm_solver_integrates_the_exact_gaussian_flow():
    """Analytic oracle: DPM-Solver++ on the flow's velocity converges to mean + std x0, beats
    Euler at 10 network calls, and returns a single data point exactly after any number of
    steps. (On Gaussian data Heun is more accurate still — the curvature is smooth; the
    multistep solver earns its place on image data, see benchmarks/flow_matching_vs_diffusion.py.)"""
    mean, std = 0.3, 0.5
    x0 = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = mean + std * x0
    v = gaussian_data_velocity(mean, std)

    def err(method, steps):
        return float((integrate(v, x0, steps, method) - exact).abs().mean())

    assert err("dpm++", 10) < err("euler", 10) / 3
    assert err("dpm++", 400) < 2e-4 < err("dpm++", 50) < err("dpm++", 10)
    point = integrate(gaussian_data_velocity(0.7, 0.0), x0, 3, "dpm++")
    assert torch.allclose(point, torch.full_like(point, 0.7), atol=1e-6)
    with pytest.raises(GenlabError, match="dpm\\+\\+"):
        integrate(v, x0, 3, "dpm++", t0=0.5)


def test_hutchinson_likelihood_is_unbiased_for_a_linear_flow():
    """v(x) = A x maps N(0, I) at t=0 to N(0, e^A e^Aᵀ) at t=1; the mean of many one-probe
    estimates matches that exact log-density within a few standard errors, and a single
    estimate is exact when A is diagonal (Rademacher probes: εᵀ A ε = tr A)."""
    g = torch.Generator().manual_seed(1)
    d = 4
    a = 0.4 * torch.randn(d, d, generator=g, dtype=torch.float64)
    x1 = torch.randn(1, d, 1, 1, generator=g, dtype=torch.float64)
    m = torch.linalg.matrix_exp(a)
    cov = m @ m.T
    exact = float(
        torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), cov).log_prob(x1.flatten(1))
    )
    k = 2000
    xs = x1.expand(k, -1, -1, -1)
    eps = (torch.randint(0, 2, xs.shape, generator=g) * 2 - 1).double()
    est = _log_density_hutchinson(linear_field(a), xs, eps, steps=100)
    assert est.std() > 0.01  # the probes really vary for a non-diagonal A
    assert float(est.mean()) == pytest.approx(exact, abs=4 * float(est.std()) / math.sqrt(k) + 1e-3)
    diag = torch.diag(torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64))
    one = _log_density_hutchinson(linear_field(diag), x1, eps[:1], steps=100)
    ref = torch.distributions.Normal(0.0, torch.exp(torch.diagonal(diag))).log_prob(x1.flatten()).sum()
    assert float(one) == pytest.approx(float(ref), abs=1e-5)  # Heun discretisation only


def tiny(**kw):
    params = dict(
        width=8,
        n_res_blocks=1,
        max_steps=4,
        steps=2,
        likelihood_steps=2,
        likelihood_probes=2,
        batch_size=16,
        preset="quick",
        device="cpu",
    )
    params.update(kw)
    return make_model("flow-matching", **params)


def test_model_fits_samples_and_estimates_a_likelihood_with_standard_error(digits, tmp_path):
    X = digits.images[:64]
    model = tiny().fit(X)
    s = model.sample(5, seed=0)
    assert s.shape == (5, 1, 8, 8) and s.dtype == torch.uint8
    assert torch.equal(s, model.sample(5, seed=0))
    assert model.sample(3, seed=0, sampler="euler", steps=1).shape == (3, 1, 8, 8)
    assert model.sample(3, seed=0, sampler="dpm++", steps=4).shape == (3, 1, 8, 8)
    est, se = model.log_likelihood_estimate(X[:6])
    assert est.shape == se.shape == (6,) and np.all(np.isfinite(est)) and np.all(se > 0)
    np.testing.assert_allclose(model.score_samples(X[:6]), est)
    assert model.likelihood == "estimate"
    model.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert torch.equal(loaded.sample(4, seed=1), model.sample(4, seed=1))


def test_class_conditional_guidance(digits):
    X, y = digits.images[:64], digits.labels[:64]
    model = tiny(condition="label").fit(X, y)
    assert model.sample(4, y=3, seed=0, guidance=2.0).shape == (4, 1, 8, 8)
    assert model.sample(4, seed=0).shape == (4, 1, 8, 8)
    with pytest.raises(GenlabError, match="guidance needs a conditional model"):
        tiny().fit(X).sample(2, guidance=2.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sampler": "rk4"}, "sampler='rk4'"),
        ({"steps": 0}, "steps=0 must be >= 1"),
        ({"condition": "text"}, "condition='text'"),
        ({"likelihood_probes": 0}, "likelihood_probes=0"),
    ],
)
def test_bad_hyper_parameters(digits, params, message):
    with pytest.raises(GenlabError, match=message):
        tiny(**params).fit(digits.images[:32])


# ---------------------------------------------------------------------------- text conditioning
@pytest.fixture(scope="module")
def texted(zeros_and_ones):
    torch.set_num_threads(1)
    X, _, captions = zeros_and_ones
    params = dict(width=16, max_steps=150, lr=3e-3, warmup_steps=0, val_fraction=0.0, batch_size=64)
    return tiny(condition="text", **params).fit(X, captions)


@needs_text
def test_the_velocity_uses_the_caption(texted, zeros_and_ones):
    """After brief training the flow-matching loss of a digit is lower with its own caption
    than with a caption naming the other digit (same images, times and noise)."""
    own, swapped = own_and_swapped_caption_losses(texted, zeros_and_ones)
    assert own < 0.95 * swapped


@needs_text
def test_text_guidance_is_the_guided_combination_of_the_two_branches(texted):
    """guided_velocity = v_u + g (v_c - v_u) with v_c the prompt's and v_u the null vector's
    velocity, each from its own unbatched call; g = 0 is the unconditional model."""
    net = texted.network_
    cond = texted.encode_prompts(["a bold zero", "a thin one", "a one", "a zero"], 4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.rand(4, generator=g)
    with torch.no_grad():
        v_c = net.velocity(x, t, cond=cond)
        v_u = net.velocity(x, t)
        guided = net.guided_velocity(None, 2.5, cond)(x, t)
        zero = net.guided_velocity(None, 0.0, cond)(x, t)
    assert not torch.allclose(v_c, v_u, atol=1e-4)  # the prompt changes the velocity
    torch.testing.assert_close(guided, v_u + 2.5 * (v_c - v_u), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(zero, v_u)
    a = texted.sample(4, prompt="a bold zero", guidance=0.0, seed=3)
    assert torch.equal(a, texted.sample(4, seed=3, unconditional=True))
    c = texted.sample(2, y=["a zero", "a one"], seed=1)
    assert torch.equal(c, texted.sample(2, prompt=["a zero", "a one"], seed=1))


@needs_text
def test_text_model_without_prompt_draws_training_captions_and_reloads(texted, zeros_and_ones, tmp_path):
    _, _, captions = zeros_and_ones
    assert texted.caption_pool_ == captions  # fewer captions than the pool holds: all kept
    a = texted.sample(4, seed=5)
    assert torch.equal(a, texted.sample(4, seed=5))
    assert not torch.equal(a, texted.sample(4, seed=5, unconditional=True))
    texted.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert loaded.text_encoder_id_ == texted.text_encoder_id_ and "all-MiniLM-L6-v2@sha256:" in loaded.text_encoder_id_
    assert loaded.caption_pool_ == captions and torch.equal(loaded.sample(4, seed=5), a)
    assert torch.equal(loaded.sample(3, prompt="a one", seed=2), texted.sample(3, prompt="a one", seed=2))
    est, se = loaded.log_likelihood_estimate(zeros_and_ones[0][:3])  # scored with the null branch
    assert np.all(np.isfinite(est)) and np.all(se > 0)


@needs_text
def test_text_conditioning_errors_name_the_problem(texted, zeros_and_ones, digits):
    X, _, captions = zeros_and_ones
    with pytest.raises(GenlabError, match="one caption per image"):
        tiny(condition="text").fit(X)
    with pytest.raises(GenlabError, match=r"captions: \d+ given for \d+ images"):
        tiny(condition="text").fit(X, captions[:-1])
    with pytest.raises(GenlabError, match="text-conditional; give prompts"):
        texted.sample(2, y=1)
    with pytest.raises(GenlabError, match="not both"):
        texted.sample(2, y=["a", "b"], prompt="a one")
    with pytest.raises(GenlabError, match="not both"):
        texted.sample(2, prompt="a one", unconditional=True)
    with pytest.raises(GenlabError, match="prompt"):
        texted.sample(2, prompt="")
    with pytest.raises(GenlabError, match="not text-conditional"):
        tiny().fit(digits.images[:32]).sample(1, prompt="a one")
