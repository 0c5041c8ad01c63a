"""GAN family: losses against their formulas, penalties against autograd, spectral norm,
networks at every size, augmentation, a toy 2-D GAN that covers all modes, the collapse
monitor, and the model (n-critic schedule, truncation, inversion, save/load, resume)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab import GenlabError
from genlab.adversarial import collapse_report, diff_augment, discriminator_loss, generator_loss, gradient_penalty, nearest_mode, parse_policy, r1_penalty
from genlab.adversarial.augment import cutout, translate
from genlab.nn.gan import ARCHITECTURES, ConditionalBatchNorm2d, make_gan_networks


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- losses
R = np.array([2.0, -0.5, 0.3, 1.7], dtype=np.float64)
Fk = np.array([-1.2, 0.4, 2.5, -0.1], dtype=np.float64)


def _np_softplus(x):
    return np.log1p(np.exp(x))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize(
    "kind, d_expected, g_expected",
    [
        ("ns", np.mean(-np.log(_sigmoid(R))) + np.mean(-np.log(1 - _sigmoid(Fk))), np.mean(-np.log(_sigmoid(Fk)))),
        ("hinge", np.mean(np.maximum(0, 1 - R)) + np.mean(np.maximum(0, 1 + Fk)), -np.mean(Fk)),
        ("wgan-gp", np.mean(Fk) - np.mean(R), -np.mean(Fk)),
        ("lsgan", 0.5 * np.mean((R - 1) ** 2) + 0.5 * np.mean(Fk**2), 0.5 * np.mean((Fk - 1) ** 2)),
    ],
)
def test_losses_match_their_formulas(kind, d_expected, g_expected):
    r, f = torch.tensor(R, dtype=torch.float32), torch.tensor(Fk, dtype=torch.float32)
    assert float(discriminator_loss(kind, r, f)) == pytest.approx(d_expected, rel=1e-5)
    assert float(generator_loss(kind, f)) == pytest.approx(g_expected, rel=1e-5)
    assert _np_softplus(0.0) == pytest.approx(math.log(2))  # the oracle's own sanity


def test_unknown_loss_names_the_choices():
    with pytest.raises(GenlabError, match="hinge"):
        discriminator_loss("wasserstein", torch.zeros(2), torch.zeros(2))


class _Quadratic(nn.Module):
    """D(x) = sum(w * x²) + sum(v * x): its input gradient 2 w x + v is known in closed form."""

    def __init__(self, shape):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(shape, generator=g))
        self.v = nn.Parameter(torch.randn(shape, generator=g))

    def forward(self, x):
        return (self.w * x**2 + self.v * x).flatten(1).sum(1)


def test_gradient_penalty_matches_direct_autograd_and_closed_form():
    torch.manual_seed(0)
    real, fake = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    critic = _Quadratic((1, 4, 4))
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    eps = torch.rand((5, 1, 1, 1), generator=torch.Generator().manual_seed(3))
    x_hat = (eps * real + (1 - eps) * fake).double()
    grad = 2 * critic.w.double() * x_hat + critic.v.double()  # analytic ∇_x D
    expected = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert float(gp.detach()) == pytest.approx(float(expected), rel=1e-5)
    # differentiable w.r.t. the critic: compare with autograd of the closed form
    gp.backward()
    w = critic.w.detach().double().requires_grad_(True)
    g2 = 2 * w * x_hat + critic.v.detach().double()
    ((g2.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    torch.testing.assert_close(critic.w.grad.double(), w.grad, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_is_float32_under_bf16_autocast():
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(lambda x: D(x).squeeze(1), real, fake)
    assert gp.dtype == torch.float32
    # D is linear: ∇ = w everywhere, so the penalty is (‖w‖ - 1)² exactly
    assert float(gp) == pytest.approx(float((D[1].weight.norm() - 1) ** 2), rel=1e-5)


def test_r1_penalty_matches_the_closed_form():
    real = torch.randn(6, 1, 4, 4)
    critic = _Quadratic((1, 4, 4))
    pen, logits = r1_penalty(critic, real)
    grad = 2 * critic.w.detach() * real + critic.v.detach()
    assert float(pen) == pytest.approx(float(grad.flatten(1).pow(2).sum(1).mean()), rel=1e-5)
    torch.testing.assert_close(logits, critic(real).detach(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- networks
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (2, 9, 13)])
def test_networks_produce_every_size_and_channel_count(arch, shape):
    torch.manual_seed(0)
    G, D = make_gan_networks(arch, shape, 8, g_width=4, d_width=4, n_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    x = G(torch.randn(4, 8), y)
    assert x.shape == (4, *shape) and float(x.abs().max()) <= 1.0
    assert D(x, y).shape == (4,)


def test_networks_reject_too_small_images():
    with pytest.raises(GenlabError, match="at least 4x4"):
        make_gan_networks("dcgan", (1, 3, 8), 8, g_width=4, d_width=4)
    with pytest.raises(GenlabError, match="architecture"):
        make_gan_networks("stylegan", (1, 8, 8), 8, g_width=4, d_width=4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_spectral_norm_keeps_top_singular_values_near_one(arch):
    torch.manual_seed(0)
    _, D = make_gan_networks(arch, (1, 16, 16), 8, g_width=8, d_width=8, d_spectral_norm=True)
    x = torch.randn(8, 1, 16, 16)
    D.train()
    for _ in range(30):  # power iterations run in training forwards
        D(x)
    D.eval()
    checked = 0
    for m in D.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()  # the normalised weight
            sigma = torch.linalg.svdvals(w.reshape(w.shape[0], -1).double())[0]
            assert float(sigma) == pytest.approx(1.0, abs=0.03)
            raw = m.parametrizations.weight.original.detach()
            assert float(torch.linalg.svdvals(raw.reshape(raw.shape[0], -1).double())[0]) != pytest.approx(1.0, abs=0.03)
            checked += 1
    assert checked >= 4


def test_conditional_batchnorm_uses_soft_labels_linearly():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, n_classes=2)
    nn.init.normal_(cbn.gain.weight)
    nn.init.normal_(cbn.bias.weight)
    cbn.eval()
    x = torch.randn(2, 3, 4, 4)
    a = cbn(x, torch.tensor([0, 0]))
    b = cbn(x, torch.tensor([1, 1]))
    mid = cbn(x, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    torch.testing.assert_close(mid, (a + b) / 2, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, b)


def test_projection_discriminator_depends_on_the_label():
    torch.manual_seed(0)
    _, D = make_gan_networks("resnet", (1, 8, 8), 8, g_width=4, d_width=4, n_classes=3)
    nn.init.normal_(D.embed.weight)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 1])))
    with pytest.raises(GenlabError, match="labels"):
        D(x)


# ---------------------------------------------------------------------- augmentation
def test_translation_shifts_whole_images_and_fills_background():
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3:5, 3:5] = 1.0
    g = torch.Generator().manual_seed(0)
    out = translate(x, generator=g)
    assert out.shape == x.shape
    assert torch.all((out == 1.0).flatten(1).sum(1) == 4)  # the block moves (by ≤1 px) and stays whole
    moved = (out != x).flatten(1).any(1).float().mean()
    assert 0.5 < float(moved) < 1.0  # most images move, the (0, 0) shift leaves some alone
    rows = (out == 1.0).nonzero()[:, 2]
    assert int(rows.min()) >= 2 and int(rows.max()) <= 5


def test_cutout_blanks_at_most_a_quarter_and_augment_is_differentiable():
    x = torch.ones(32, 3, 8, 8, requires_grad=True)
    g = torch.Generator().manual_seed(1)
    out = cutout(x, generator=g)
    blank = (out == -1.0).flatten(1).float().mean(1)
    assert float(blank.max()) <= 0.25 + 1e-6 and float(blank.min()) > 0
    y = diff_augment(x, parse_policy("translation,cutout,color", 3), generator=g)
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_policy_parsing():
    assert parse_policy("translation,cutout,color", 1) == ("translation", "cutout")
    assert parse_policy("none", 3) == () and parse_policy(None, 3) == ()
    with pytest.raises(GenlabError, match="flip"):
        parse_policy("flip", 1)


# ---------------------------------------------------------------------- toy GAN on a ring of Gaussians
RING_RADIUS, RING_STD = 2.0, 0.02


def ring_centres(k=8):
    angles = 2 * np.pi * np.arange(k) / k
    return np.stack([RING_RADIUS * np.cos(angles), RING_RADIUS * np.sin(angles)], axis=1)


def sample_ring(n, generator):
    centres = torch.tensor(ring_centres(), dtype=torch.float32)
    idx = torch.randint(0, 8, (n,), generator=generator)
    return centres[idx] + RING_STD * torch.randn(n, 2, generator=generator)


def _mlp(i, o, h=128, act=nn.ReLU):
    return nn.Sequential(nn.Linear(i, h), act(), nn.Linear(h, h), act(), nn.Linear(h, o))


def train_ring_gan(steps, loss="ns", seed=0):
    torch.manual_seed(seed)
    G, D = _mlp(8, 2), _mlp(2, 1, act=lambda: nn.LeakyReLU(0.2))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        real = sample_ring(256, g)
        fake = G(torch.randn(256, 8, generator=g))
        d_loss = discriminator_loss(loss, D(real).squeeze(1), D(fake.detach()).squeeze(1))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(loss, D(G(torch.randn(256, 8, generator=g))).squeeze(1))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    return G


def test_toy_gan_covers_all_eight_modes():
    G = train_ring_gan(1500)
    with torch.no_grad():
        x = G(torch.randn(2000, 8, generator=torch.Generator().manual_seed(9))).numpy()
    report = collapse_report(nearest_mode(x, ring_centres(), 0.25), 8)
    assert report.modes_covered == 8, report
    assert not report.collapsed and report.normalized_entropy > 0.85
    assert report.high_quality > 0.7


def test_collapse_monitor_flags_a_collapsed_generator():
    rng = np.random.default_rng(0)
    centres = ring_centres()
    collapsed = centres[[2]] + RING_STD * rng.standard_normal((1000, 2))  # everything on one mode
    two = centres[rng.integers(0, 2, 1000)] + RING_STD * rng.standard_normal((1000, 2))
    real = centres[rng.integers(0, 8, 1000)] + RING_STD * rng.standard_normal((1000, 2))
    r1 = collapse_report(nearest_mode(collapsed, centres, 0.3), 8)
    r2 = collapse_report(nearest_mode(two, centres, 0.3), 8)
    r8 = collapse_report(nearest_mode(real, centres, 0.3), 8)
    assert r1.collapsed and r1.modes_covered == 1 and r1.normalized_entropy == pytest.approx(0.0)
    assert r2.collapsed and r2.modes_covered == 2 and r2.normalized_entropy == pytest.approx(1 / 3, abs=0.01)  # ln 2 / ln 8
    assert not r8.collapsed and r8.modes_covered == 8 and r8.high_quality == 1.0
