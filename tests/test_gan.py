"""GAN family: losses against their formulas, penalties against autograd, spectral norm,
networks at every size, augmentation, a toy 2-D GAN that covers all modes, the collapse
monitor, self-conditioning clusters, and the model (n-critic schedule, truncation,
inversion, save/load, resume)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab import GenlabError
from genlab.adversarial import (
    collapse_report,
    diff_augment,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    nearest_mode,
    parse_policy,
    r1_penalty,
)
from genlab.adversarial.augment import cutout, translate
from genlab.adversarial.clusters import assign_clusters, fit_clusters
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
    assert float(gp.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
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
    assert float(gp.detach()) == pytest.approx(float((D[1].weight.detach().norm() - 1) ** 2), rel=1e-5)


def test_r1_penalty_matches_the_closed_form():
    real = torch.randn(6, 1, 4, 4)
    critic = _Quadratic((1, 4, 4))
    pen, logits = r1_penalty(critic, real)
    grad = 2 * critic.w.detach() * real + critic.v.detach()
    assert float(pen.detach()) == pytest.approx(float(grad.flatten(1).pow(2).sum(1).mean()), rel=1e-5)
    torch.testing.assert_close(logits, critic(real).detach(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- networks
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (2, 9, 13)])
def test_networks_produce_every_size_and_channel_count(arch, shape):
    torch.manual_seed(0)
    G, D = make_gan_networks(arch, shape, 8, g_width=4, d_width=4, n_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    x = G(torch.randn(4, 8), y)
    assert x.shape == (4, *shape) and float(x.detach().abs().max()) <= 1.0
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
            assert float(torch.linalg.svdvals(raw.reshape(raw.shape[0], -1).double())[0]) != pytest.approx(
                1.0, abs=0.03
            )
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
    assert (
        r2.collapsed and r2.modes_covered == 2 and r2.normalized_entropy == pytest.approx(1 / 3, abs=0.01)
    )  # ln 2 / ln 8
    assert not r8.collapsed and r8.modes_covered == 8 and r8.high_quality == 1.0


# ---------------------------------------------------------------------- the model
from sklearn.base import clone  # noqa: E402

from genlab.models import make_model  # noqa: E402
from genlab.models.gan import GAN, GANTrainer, truncated_normal  # noqa: E402
from genlab.training import load_latest  # noqa: E402


def tiny(**kw):
    params = dict(
        preset="quick",
        device="cpu",
        g_width=8,
        d_width=8,
        latent_dim=8,
        max_steps=6,
        batch_size=16,
        selection="last",
        clusters=0,  # the plain path; self-conditioning has its own tests below
    )
    params.update(kw)
    return GAN(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    return tiny(max_steps=40, lr=1e-3, d_lr=1e-3).fit(digits.images[:200])


def test_registered_and_presets(digits):
    model = make_model("gan")
    assert isinstance(model, GAN) and model.likelihood == "none"
    values = model._preset_values("quick", (1, 28, 28), 8000)
    assert values["architecture"] == "dcgan" and values["augment"] == "none" and values["n_critic"] == 1
    assert model._preset_values("quick", (1, 8, 8), 1437)["augment"] == "translation,cutout"
    # self-conditioning: unconditional quick models, K = sqrt(N / 2) in [10, 100]
    assert values["clusters"] == 63 and model._preset_values("quick", (1, 28, 28), 900)["clusters"] == 21
    assert model._preset_values("quick", (1, 8, 8), 1437)["clusters"] == 27
    assert model._preset_values("quick", (1, 8, 8), 60)["clusters"] == 10
    assert model._preset_values("quick", (1, 8, 8), 5)["clusters"] == 5
    assert model._preset_values("quick", (1, 28, 28), 60_000)["clusters"] == 100
    assert GAN(condition="label")._preset_values("quick", (1, 28, 28), 8000)["clusters"] == 0
    assert model._preset_values("full", (1, 28, 28), 8000)["clusters"] == 0
    full = GAN(loss="wgan-gp")._preset_values("full", (3, 32, 32), 50000)
    assert (
        full["architecture"] == "resnet"
        and full["n_critic"] == 5
        and full["beta2"] == 0.9
        and full["d_lr"] > full["lr"]
    )


def test_n_critic_schedule_takes_the_stated_steps(digits):
    trainers = []

    class Recording(GANTrainer):
        def fit(self, network, data, *args, **kwargs):
            trainers.append(self)
            return super().fit(network, data, *args, **kwargs)

    class Counted(GAN):
        trainer_class = Recording

    model = Counted(**tiny(n_critic=3, max_steps=5, d_grad_clip=0.5, grad_clip=2.0).get_params()).fit(
        digits.images[:100]
    )
    trainer = trainers[0]
    steps = {name: {int(s["step"]) for s in opt.state.values()} for name, opt in trainer.optimizers.items()}
    assert steps == {"discriminator": {15}, "generator": {5}}
    assert model.training_summary_["steps"] == 5
    assert trainer.grad_clips == {"discriminator": 0.5, "generator": 2.0}  # per network, else grad_clip
    # the EMA averages the generator only: D is never copied
    assert trainer.ema is not None and set(trainer.ema.state_dict()) == set(model.network_.generator.state_dict())
    betas = {name: opt.param_groups[0]["betas"] for name, opt in trainer.optimizers.items()}
    assert betas == {"discriminator": (0.5, 0.999), "generator": (0.5, 0.999)}


def test_truncation_zero_gives_the_mean_latents_image(fitted):
    # decode rounds plainly; sample maps through the tone curve unless told not to
    x = fitted.sample(6, seed=1, truncation=0.0, tone_curve=False)
    mean_image = fitted.decode(torch.zeros(1, fitted.latent_dim_))
    assert torch.equal(x, mean_image.expand_as(x))
    assert not torch.equal(fitted.sample(6, seed=1), x)


def test_truncated_normal_matches_resampling():
    g = torch.Generator().manual_seed(0)
    z = truncated_normal((200_000,), 0.5, g).double()
    assert float(z.abs().max()) <= 0.5
    # variance of N(0,1) truncated to [-a, a]: 1 - 2 a φ(a) / (2Φ(a) - 1)
    a = 0.5
    phi, Phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(a / math.sqrt(2)))
    assert float(z.var()) == pytest.approx(1 - 2 * a * phi / (2 * Phi - 1), rel=0.02)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.005)


def test_inversion_recovers_a_generated_image(fitted):
    z_true = torch.randn(3, fitted.latent_dim_, generator=torch.Generator().manual_seed(5))
    target = fitted.decode(z_true)
    z_hat = fitted.invert(target, steps=300, restarts=3)
    recon = fitted.decode(z_hat)
    err = (recon.float() - target.float()).abs().mean() / 255
    baseline = (fitted.decode(torch.zeros(3, fitted.latent_dim_)).float() - target.float()).abs().mean() / 255
    assert float(err) < 0.03 and float(err) < 0.25 * float(baseline)
    assert fitted.encode(target[:1]).shape == (1, fitted.latent_dim_)
    assert fitted.reconstruct(target[:2]).shape == target[:2].shape


def test_interpolate_through_inverted_latents(fitted, digits):
    strip = fitted.interpolate(digits.images[0], digits.images[1], 5, steps=20)
    assert strip.shape == (5, 1, 8, 8) and strip.dtype == torch.uint8


def test_save_load_and_clone(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = GAN.load(tmp_path / "m")
    assert torch.equal(loaded.sample(5, seed=2), fitted.sample(5, seed=2))
    assert torch.equal(loaded.sample(5, seed=2, truncation=0.7), fitted.sample(5, seed=2, truncation=0.7))
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "network_")


@pytest.mark.parametrize("clusters", [0, 3])
def test_resume_continues_the_run_exactly(digits, tmp_path, clusters):
    X = digits.images[:96]
    kw = dict(epochs=3, max_steps=None, n_critic=2, checkpoint_every=3, r1_gamma=0.1, r1_every=2, clusters=clusters)

    class Killed(GAN):
        def _training_callbacks(self, config):
            from genlab.training import StopAfterSteps

            return [StopAfterSteps(7)]

    straight = tiny(checkpoint_dir=str(tmp_path / "a"), **kw).fit(X)
    with pytest.raises(KeyboardInterrupt):
        Killed(**{**tiny().get_params(), "checkpoint_dir": str(tmp_path / "b"), **kw}).fit(X)
    assert load_latest(tmp_path / "b").step == 6
    resumed = tiny(checkpoint_dir=str(tmp_path / "b"), **kw).fit(X, resume=True)
    sa, sb = straight.network_.state_dict(), resumed.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(straight.sample(4, seed=0), resumed.sample(4, seed=0))


def test_conditional_gan_samples_with_labels(digits):
    model = tiny(condition="label", architecture="resnet", loss="hinge").fit(digits.images[:120], digits.labels[:120])
    assert model.n_classes_ == 10 and int(model.class_counts_.sum()) == 120
    assert model.sample(4, y=3, seed=0).shape == (4, 1, 8, 8)
    assert model.sample(4, seed=0).shape == (4, 1, 8, 8)  # labels from the class frequencies
    soft = np.full((2, 10), 0.1, dtype=np.float32)
    assert model.decode(torch.zeros(2, 8), y=soft).shape == (2, 1, 8, 8)
    with pytest.raises(GenlabError, match="labels"):
        model.decode(torch.zeros(2, 8))
    with pytest.raises(GenlabError, match="needs class labels"):
        tiny(condition="label").fit(digits.images[:50])


@pytest.mark.parametrize("loss", ["wgan-gp", "lsgan"])
def test_other_losses_train_and_log_health(digits, loss):
    model = tiny(loss=loss, n_critic=2, max_steps=3).fit(digits.images[:64])
    row = model.history_[-1] if model.history_ else None
    assert model.training_summary_["steps"] == 3
    if row is not None:
        assert {
            "train_d_loss",
            "train_g_loss",
            "train_d_real_acc",
            "train_d_fake_acc",
            "train_d_grad_norm",
            "train_g_grad_norm",
        } <= set(row)


def test_metric_selection_logs_fd_and_class_entropy(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    X, y = digits.images[:200], digits.labels[:200]
    model = tiny(selection="metric", probe_samples=100, probe_every=20, epochs=4, max_steps=None).fit(X, y)
    measured = [r["step"] for r in model.history_ if "probe_fd" in r]
    assert measured == [
        24,
        48,
    ]  # 12 steps per epoch: the epoch that passes step 20 (steps 13-24), and the end (40 falls in 37-48)
    row = model.history_[-1]
    assert row["probe_fd"] > 0 and 0.0 <= row["probe_class_entropy"] <= 1.0
    summary = model.training_summary_
    assert summary["selection"] == "metric" and summary["kept"] == "best"
    assert summary["best_score"] == pytest.approx(min(r["probe_fd"] for r in model.history_ if "probe_fd" in r))


def test_odd_sizes_train_and_bad_input_is_named(digits):
    odd = torch.randint(0, 256, (40, 3, 9, 13), dtype=torch.uint8)
    model = tiny(max_steps=2).fit(odd)
    assert model.sample(3, seed=0).shape == (3, 3, 9, 13)
    with pytest.raises(GenlabError, match="at least 4x4"):
        tiny().fit(torch.zeros(10, 1, 3, 8, dtype=torch.uint8))
    with pytest.raises(GenlabError, match="truncation"):
        model.sample(2, truncation=-0.5)
    with pytest.raises(GenlabError, match="truncation"):
        model.sample(2, truncation=float("nan"))
    with pytest.raises(GenlabError, match="unknown option"):
        model.sample(2, temperature=0.5)
    with pytest.raises(GenlabError, match="genlab evaluate"):
        model.score_samples(odd[:2])
    with pytest.raises(GenlabError, match="X: images of shape"):
        model.invert(digits.images[:2])
    with pytest.raises(GenlabError, match="loss='bce'"):
        tiny(loss="bce").fit(odd)
    with pytest.raises(GenlabError, match="augment"):
        tiny(augment="rotate").fit(odd)
    with pytest.raises(GenlabError, match="not class-conditional"):
        model.sample(2, y=1)


# ---------------------------------------------------------------------- self-conditioning
def _three_groups(n_per: int = 30, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Images with a bright 3x3 block in one of three corners, plus faint noise."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 30, (3 * n_per, 1, 8, 8), generator=g, dtype=torch.uint8)
    group = np.repeat(np.arange(3), n_per)
    for i, (r, c) in enumerate([(0, 0), (0, 5), (5, 0)]):
        images[group == i, :, r : r + 3, c : c + 3] = 250
    return images, group


def test_clusters_recover_separated_groups_and_assign_like_training():
    images, group = _three_groups()
    found = fit_clusters(images, 3, seed=0)
    labels = found.labels.numpy()
    # each true group is exactly one cluster (up to renaming)
    assert {tuple(sorted(set(labels[group == i]))) for i in range(3)} == {(0,), (1,), (2,)}
    assert len(set(labels)) == 3 and int(found.counts.sum()) == len(images)
    assert found.components.shape[1] == 64 and found.centroids.shape == (3, found.components.shape[0])
    again = assign_clusters(images, found.mean, found.components, found.centroids)
    assert torch.equal(again, found.labels)
    with pytest.raises(GenlabError, match="clusters=0"):
        fit_clusters(images, 0)
    # fewer distinct images than clusters: the empty clusters are dropped
    twins = torch.cat([images[:1].repeat(5, 1, 1, 1), images[-1:].repeat(5, 1, 1, 1)])
    few = fit_clusters(twins, 4, seed=0)
    assert few.counts.tolist() in ([5, 5],) and few.centroids.shape[0] == 2
    assert torch.equal(few.labels, assign_clusters(twins, few.mean, few.components, few.centroids))


@pytest.fixture(scope="module")
def self_conditioned(digits):
    return tiny(clusters=4, max_steps=20, lr=1e-3, d_lr=1e-3).fit(digits.images[:200], digits.labels[:200])


def test_self_conditioned_gan_samples_its_clusters_by_frequency(self_conditioned):
    model = self_conditioned
    assert int(model.cluster_counts_.sum()) == 200 and model.network_.n_classes == 4
    assert model.latent_dim_ == 8 + 4 and not model.conditional and not hasattr(model, "class_counts_")
    # at truncation 0 every sample is the mean-latent image of the cluster it drew
    means = model.decode(torch.cat([torch.zeros(4, 8), torch.eye(4)], dim=1))
    samples = model.sample(400, seed=0, truncation=0.0, tone_curve=False)
    which = (samples[:, None].float() - means[None].float()).abs().flatten(2).sum(2).argmin(1)
    assert torch.equal(samples, means[which])
    expected = model.cluster_counts_.double() / 200
    observed = torch.bincount(which, minlength=4).double() / 400
    assert float((observed - expected).abs().max()) < 0.08  # 3.3 s.e. of the largest share
    with pytest.raises(GenlabError, match="not class-conditional"):
        model.sample(2, y=1)


def test_self_conditioned_codes_carry_the_cluster(self_conditioned, digits):
    model = self_conditioned
    codes = model.encode(digits.images[:5])
    nearest = assign_clusters(
        digits.images[:5], model.cluster_mean_, model.cluster_components_, model.cluster_centroids_
    )
    assert codes.shape == (5, 12) and torch.equal(codes[:, 8:].argmax(1), nearest)
    assert torch.equal(codes[:, 8:].sum(1), torch.ones(5))
    # cluster weights are clipped and normalised: scaled or negative entries name the same mixture
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([[0.2, 0.0, 0.6, 0.2], [1.0, 0.0, 0.0, 0.0]])
    raw = torch.tensor([[2.0, -1.0, 6.0, 2.0], [3.0, 0.0, -5.0, 0.0]])
    assert torch.equal(model.decode(torch.cat([z, raw], 1)), model.decode(torch.cat([z, w], 1)))
    assert model.reconstruct(digits.images[:2]).shape == (2, 1, 8, 8)
    assert model.interpolate(digits.images[0], digits.images[1], 4, steps=5).shape == (4, 1, 8, 8)


def test_self_conditioned_save_load_and_old_checkpoints(self_conditioned, fitted, tmp_path):
    import json

    self_conditioned.save(tmp_path / "sc")
    loaded = GAN.load(tmp_path / "sc")
    assert torch.equal(loaded.sample(6, seed=3), self_conditioned.sample(6, seed=3))
    assert torch.equal(loaded.cluster_centroids_, self_conditioned.cluster_centroids_)
    # a model saved before the option existed has no "clusters" and no clusters: it loads as 0
    fitted.save(tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["params"]["clusters"]
    config["fitted"]["resolved_params_"].pop("clusters", None)
    config_path.write_text(json.dumps(config))
    old = GAN.load(tmp_path / "old")
    assert old.clusters == 0 and not old.self_conditioned_
    assert torch.equal(old.sample(4, seed=1), fitted.sample(4, seed=1))


def test_self_conditioning_bad_input(digits):
    with pytest.raises(GenlabError, match="self-conditioning is for unconditional"):
        tiny(condition="label", clusters=3).fit(digits.images[:40], digits.labels[:40])
    with pytest.raises(GenlabError, match="larger than the number of training images"):
        tiny(clusters=50).fit(digits.images[:40])
    with pytest.raises(GenlabError, match="clusters"):
        tiny(clusters=-1).fit(digits.images[:40])
    with pytest.raises(GenlabError, match="must be <= 1000"):
        tiny(clusters=5000).fit(digits.images[:40])
