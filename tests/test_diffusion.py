"""The ``diffusion`` model and its Gaussian-diffusion core: loss weights and
parametrisations against formulas, a batch the network overfits, sampling options and
guidance, the likelihood bound, save/load, and errors that name the argument."""

import math

import numpy as np
import pytest
import torch

import genlab
from genlab import GenlabError
from genlab.diffusion import GaussianDiffusion, loss_weight, to_prediction, training_target
from genlab.models.diffusion import Diffusion
from genlab.nn.unet import UNet

from .conftest import own_and_swapped_caption_losses
from .markers import needs_text


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(width=8, max_steps=30, elbo_points=2, steps=4, device="cpu", warmup_steps=0, val_fraction=0.0)


@pytest.fixture(scope="module")
def data(digits):
    return digits.images[:300].numpy(), digits.labels[:300].numpy()


@pytest.fixture(scope="module")
def labelled(data):
    """A small class-conditional model trained briefly (shared by several tests)."""
    torch.set_num_threads(1)
    X, y = data
    return Diffusion(condition="label", **{**TINY, "max_steps": 100, "lr": 3e-3}).fit(X, y)


# ---------------------------------------------------------------------- formulas
def test_parametrisations_are_consistent():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    lam = torch.tensor([-6.0, -1.0, 0.0, 2.0, 7.0])
    alpha, sigma = torch.sigmoid(lam).sqrt()[:, None], torch.sigmoid(-lam).sqrt()[:, None]
    z = alpha * x + sigma * eps
    for prediction in ("v", "eps"):
        pred = to_prediction(training_target(x, eps, lam, prediction), z, lam, prediction)
        torch.testing.assert_close(pred.x0, x, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pred.eps, eps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(training_target(x, eps, lam, "v"), alpha * eps - sigma * x)


def test_min_snr_weights():
    lam = torch.tensor([-3.0, 0.0, math.log(5.0), 4.0])
    snr = np.exp(lam.numpy().astype(np.float64))
    expected_x_weight = np.minimum(snr, 5.0)  # Hang et al.: min(SNR, gamma) on the x error
    np.testing.assert_allclose(loss_weight(lam, "eps", "min_snr", 5.0).numpy(), expected_x_weight / snr, rtol=1e-5)
    np.testing.assert_allclose(loss_weight(lam, "v", "min_snr", 5.0).numpy(), expected_x_weight / (snr + 1), rtol=1e-5)
    assert torch.equal(loss_weight(lam, "v", "simple"), torch.ones(4))


def test_network_overfits_one_batch(digits):
    """Loss on one fixed batch (fixed noise and levels) falls a lot: gradients reach every part."""
    torch.manual_seed(0)
    net = GaussianDiffusion(UNet((1, 8, 8), width=8, n_classes=10), n_classes=10, label_dropout=0.0)
    batch = {"images": digits.images[:8], "labels": digits.labels[:8]}
    opt = torch.optim.Adam(net.parameters(), 3e-3)

    def loss_at_fixed_noise():
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return net(batch)[0]

    first = loss_at_fixed_noise().item()
    for _ in range(100):
        loss = loss_at_fixed_noise()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_at_fixed_noise().item() < 0.2 * first


# ---------------------------------------------------------------------- the model
def test_fit_sample_and_sampling_options(labelled):
    model = labelled
    assert model.conditional and model.n_classes_ == 10 and model.likelihood == "bound"
    a = model.sample(6, y=3, seed=1)
    assert a.shape == (6, 1, 8, 8) and a.dtype == torch.uint8
    assert torch.equal(a, model.sample(6, y=3, seed=1))
    assert not torch.equal(a, model.sample(6, y=3, seed=2))
    for options in (
        {"sampler": "ddim", "steps": 3},
        {"sampler": "ddim", "steps": 3, "eta": 1.0},
        {"sampler": "ddpm", "steps": 5},
        {"sampler": "dpm++", "steps": 2},
    ):
        out = model.sample(4, y=[0, 1, 2, 3], seed=0, **options)
        assert out.shape == (4, 1, 8, 8)
    # DDIM(eta=1) and DDPM are the same chain
    assert torch.equal(
        model.sample(4, y=1, seed=0, sampler="ddim", eta=1.0, steps=6),
        model.sample(4, y=1, seed=0, sampler="ddpm", steps=6),
    )


def test_guidance_zero_is_the_unconditional_model(labelled):
    model = labelled
    unconditional = model.sample(5, seed=4, unconditional=True)  # the null class
    assert torch.equal(model.sample(5, y=[0, 1, 2, 3, 4], seed=4, guidance=0.0), unconditional)
    guided = model.sample(5, y=[0, 1, 2, 3, 4], seed=4, guidance=3.0)
    plain = model.sample(5, y=[0, 1, 2, 3, 4], seed=4, guidance=1.0)
    assert not torch.equal(guided, plain) and not torch.equal(plain, unconditional)


def test_guidance_combines_the_two_predictions(labelled):
    net = labelled.network_
    z = torch.randn(3, 1, 8, 8)
    labels = torch.tensor([1, 2, 3])
    cond = net.denoiser_fn(labels=labels, guidance=1.0, clip=False)(z, 0.5)
    uncond = net.denoiser_fn(labels=None, clip=False)(z, 0.5)
    guided = net.denoiser_fn(labels=labels, guidance=2.5, clip=False)(z, 0.5)
    torch.testing.assert_close(guided.eps, uncond.eps + 2.5 * (cond.eps - uncond.eps), rtol=1e-4, atol=1e-5)


def test_bound_is_finite_reproducible_and_improves_with_training(data):
    X, y = data
    untrained = Diffusion(**{**TINY, "max_steps": 1, "elbo_points": 8}).fit(X)
    trained = Diffusion(**{**TINY, "max_steps": 200, "elbo_points": 8, "lr": 3e-3}).fit(X)
    a = trained.score_samples(X[:60])
    assert a.shape == (60,) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, trained.score_samples(X[:60]))
    # the same seeded noise scores both models (common random numbers), so the difference is sharp
    b = untrained.score_samples(X[:60])
    assert a.mean() > b.mean() + 8  # nats per image
    assert trained.bits_per_dim(X[:60]) < untrained.bits_per_dim(X[:60])


def test_save_load_round_trip(labelled, data, tmp_path):
    X, _ = data
    labelled.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert type(loaded) is Diffusion and loaded.get_params() == labelled.get_params()
    assert loaded.n_classes_ == 10 and not loaded.network_.training
    assert torch.equal(loaded.sample(4, y=7, seed=2, guidance=2.0), labelled.sample(4, y=7, seed=2, guidance=2.0))
    np.testing.assert_array_equal(loaded.score_samples(X[:8]), labelled.score_samples(X[:8]))


def test_presets_size_the_network_from_the_image():
    model = Diffusion(preset="quick", device="cpu")
    mnist = model._resolve_params("quick", (1, 28, 28), 8000)
    digits = model._resolve_params("quick", (1, 8, 8), 1437)
    assert mnist["patch_size"] == 2 and digits["patch_size"] == 1
    assert mnist["width"] == digits["width"] == 32 and mnist["ema_decay"] == 0.999
    full = model._resolve_params("full", (3, 64, 64), 50000)
    assert full["width"] == 64 and full["n_res_blocks"] == 2 and full["lr"] == 2e-4


def test_bad_input_names_the_argument(labelled, data):
    X, y = data
    model = labelled
    with pytest.raises(GenlabError, match="sampler='euler' is not valid"):
        model.sample(2, y=1, sampler="euler")
    with pytest.raises(GenlabError, match="steps=0 must be >= 1"):
        model.sample(2, y=1, steps=0)
    with pytest.raises(GenlabError, match="guidance=-1"):
        model.sample(2, y=1, guidance=-1.0)
    with pytest.raises(GenlabError, match="label 12 is unknown"):
        model.sample(2, y=12)
    with pytest.raises(GenlabError, match="eta=0.5 only applies to sampler='ddim'"):
        model.sample(2, y=1, eta=0.5, sampler="dpm++")
    with pytest.raises(GenlabError, match="captions: expected one string per image"):
        Diffusion(condition="text", **TINY).fit(X, "a one")  # text models take captions, not labels
    with pytest.raises(GenlabError, match=r"captions\[0\]: expected a non-empty string"):
        Diffusion(condition="text", **TINY).fit(X, y)
    with pytest.raises(GenlabError, match="condition='words' is not valid"):
        Diffusion(condition="words", **TINY).fit(X, y)
    with pytest.raises(GenlabError, match="needs class labels"):
        Diffusion(condition="label", **TINY).fit(X)
    with pytest.raises(GenlabError, match="prediction='x0' is not valid"):
        Diffusion(prediction="x0", **TINY).fit(X)
    with pytest.raises(GenlabError, match="channel_mults"):
        Diffusion(channel_mults=[1, -2], **TINY).fit(X)
    unconditional = Diffusion(**TINY).fit(X[:64])
    with pytest.raises(GenlabError, match="guidance needs a conditional model"):
        unconditional.sample(2, guidance=2.0)
    with pytest.raises(GenlabError, match="not class-conditional"):
        unconditional.sample(2, y=1)


# ---------------------------------------------------------------------------- text conditioning


@pytest.fixture(scope="module")
def texted(zeros_and_ones):
    torch.set_num_threads(1)
    X, _, captions = zeros_and_ones
    return Diffusion(condition="text", **{**TINY, "width": 16, "max_steps": 200, "lr": 3e-3}).fit(X, captions)


@needs_text
def test_the_denoiser_uses_the_caption(texted, zeros_and_ones):
    """After brief training, denoising a digit is easier with its own caption than with a
    caption naming the other digit (same images, same noise)."""
    own, swapped = own_and_swapped_caption_losses(texted, zeros_and_ones)
    assert own < 0.95 * swapped


@needs_text
def test_text_guidance_zero_is_the_unconditional_model_and_prompts_can_come_as_y(texted):
    a = texted.sample(4, prompt="a bold zero", guidance=0.0, seed=3)
    b = texted.sample(4, seed=3, unconditional=True)
    assert torch.equal(a, b)
    c = texted.sample(2, y=["a zero", "a one"], seed=1)
    d = texted.sample(2, prompt=["a zero", "a one"], seed=1)
    assert torch.equal(c, d)


@needs_text
def test_text_model_without_prompt_draws_training_captions(texted, zeros_and_ones, tmp_path):
    from genlab.models.diffusion import CAPTION_POOL_SIZE, _caption_pool

    _, _, captions = zeros_and_ones
    assert texted.caption_pool_ == captions  # fewer captions than the pool holds: all kept
    a = texted.sample(4, seed=5)
    assert torch.equal(a, texted.sample(4, seed=5))
    assert not torch.equal(a, texted.sample(4, seed=5, unconditional=True))
    texted.save(tmp_path / "m")
    loaded = genlab.models.GenerativeModel.load(tmp_path / "m")
    assert loaded.caption_pool_ == captions and torch.equal(loaded.sample(4, seed=5), a)
    many = [f"caption {i}" for i in range(CAPTION_POOL_SIZE + 500)]
    pool = _caption_pool(many, 0)
    assert (
        len(pool) == CAPTION_POOL_SIZE and len(set(pool)) == CAPTION_POOL_SIZE and pool == sorted(pool, key=many.index)
    )
    with pytest.raises(GenlabError, match="not both"):
        texted.sample(2, prompt="a one", unconditional=True)


@needs_text
def test_text_model_saves_its_encoder_identity_and_reloads(texted, tmp_path):
    texted.save(tmp_path / "m")
    loaded = genlab.models.GenerativeModel.load(tmp_path / "m")
    assert loaded.text_encoder_id_ == texted.text_encoder_id_ and "all-MiniLM-L6-v2@sha256:" in loaded.text_encoder_id_
    assert torch.equal(loaded.sample(3, prompt="a one", seed=2), texted.sample(3, prompt="a one", seed=2))
    loaded.text_encoder_id_ = "all-MiniLM-L6-v2@sha256:0000000000000000"
    loaded._text_encoder_cache = None
    with pytest.raises(GenlabError, match="trained with text encoder"):
        loaded.sample(1, prompt="a one")


@needs_text
def test_text_conditioning_errors_name_the_problem(texted, zeros_and_ones, data):
    X, _, captions = zeros_and_ones
    with pytest.raises(GenlabError, match="one caption per image"):
        Diffusion(condition="text", **TINY).fit(X)
    with pytest.raises(GenlabError, match=r"captions: \d+ given for \d+ images"):
        Diffusion(condition="text", **TINY).fit(X, captions[:-1])
    with pytest.raises(GenlabError, match=r"captions\[0\]"):
        Diffusion(condition="text", **TINY).fit(X, [""] + captions[1:])
    with pytest.raises(GenlabError, match="not class labels"):
        texted.sample(2, y=1)
    with pytest.raises(GenlabError, match="not both"):
        texted.sample(2, y=["a", "b"], prompt="a one")
    with pytest.raises(GenlabError, match="prompt"):
        texted.sample(2, prompt="")
    unconditional = Diffusion(**TINY).fit(data[0][:64])
    with pytest.raises(GenlabError, match="not text-conditional"):
        unconditional.sample(1, prompt="a one")


# ---------------------------------------------------------------------------- editing
def test_sdedit_strength_moves_the_result_away_from_the_input(labelled, data):
    X, y = data
    images = torch.from_numpy(X[:16])

    def change(strength):
        out = labelled.edit(images, strength, y=y[:16], seed=0, steps=8)
        assert out.shape == images.shape and out.dtype == torch.uint8
        return (out.float() - images.float()).abs().mean().item()

    small, large = change(0.05), change(0.95)
    assert small < 0.5 * large
    # reproducible with a seed; a label steers the edit
    assert torch.equal(labelled.edit(images[:3], 0.5, seed=1, steps=4), labelled.edit(images[:3], 0.5, seed=1, steps=4))


def test_inpainting_keeps_the_unmasked_pixels_exactly(labelled, data):
    X, y = data
    images = torch.from_numpy(X[:6])
    mask = np.zeros((8, 8), dtype=bool)
    mask[:, 4:] = True  # regenerate the right half
    out = labelled.inpaint(images, mask, y=y[:6], seed=0, steps=6)
    assert torch.equal(out[..., :4], images[..., :4])
    assert not torch.equal(out[..., 4:], images[..., 4:])
    per_image = np.zeros((6, 1, 8, 8), dtype=np.uint8)
    per_image[:, :, :2, :] = 1
    out = labelled.inpaint(images, per_image, seed=0, steps=4)
    assert torch.equal(out[:, :, 2:], images[:, :, 2:])


def test_ddim_inversion_reconstructs_and_interpolation_joins_two_images(labelled, data):
    X, _ = data
    a, b = torch.from_numpy(X[0]), torch.from_numpy(X[1])
    path = labelled.interpolate(a, b, n_images=5, steps=40)
    assert path.shape == (5, 1, 8, 8) and path.dtype == torch.uint8
    # the ends are DDIM's reconstructions from the inverted noises: close to the real images
    err_a = (path[0].float() - a.float()).abs().mean().item()
    err_b = (path[-1].float() - b.float()).abs().mean().item()
    baseline = (a.float() - b.float()).abs().mean().item()
    assert err_a < 0.35 * baseline and err_b < 0.35 * baseline
    noise = labelled.invert(torch.stack([a, b]), steps=40)
    assert noise.shape == (2, 1, 8, 8) and 0.5 < noise.std().item() < 2.0


def test_editing_errors_name_the_argument(labelled, data):
    X, _ = data
    images = torch.from_numpy(X[:2])
    with pytest.raises(GenlabError, match="strength"):
        labelled.edit(images, 1.5)
    with pytest.raises(GenlabError, match="mask: shape"):
        labelled.inpaint(images, np.ones((4, 4), dtype=bool))
    with pytest.raises(GenlabError, match="mask: selects no pixel"):
        labelled.inpaint(images, np.zeros((8, 8), dtype=bool))
    with pytest.raises(GenlabError, match="mask: expected booleans"):
        labelled.inpaint(images, np.full((8, 8), 0.5))
    with pytest.raises(GenlabError, match="not text-conditional"):
        labelled.edit(images, 0.5, prompt="a one")
    with pytest.raises(GenlabError, match="fitted on"):
        labelled.edit(np.zeros((2, 1, 4, 4), dtype=np.uint8), 0.5)
