"""NeuralGenerativeModel with a tiny family defined here: presets, sklearn behaviour,
save/load, resume through fit(resume=True), sample grids."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from torch import nn

import genlab
from genlab import GenlabError
from genlab.likelihood import dequantize, score_generator
from genlab.models import registry
from genlab.models.neural import PRESET_CONTROLLED, TRAINING_PARAMS, NeuralGenerativeModel
from genlab.nn import MLP, LabelEmbedding
from genlab.training import load_latest, read_metrics


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PixelGaussianNetwork(nn.Module):
    """Independent Gaussian per pixel whose mean and log-std come from an MLP of the
    class embedding (the null class = the unconditional model)."""

    def __init__(self, image_shape, n_classes, hidden):
        super().__init__()
        self.image_shape = tuple(image_shape)
        d = int(np.prod(image_shape))
        self.labels = LabelEmbedding(n_classes, hidden, drop_prob=0.3)
        self.head = MLP(hidden, 2 * d, hidden_dims=(hidden,))

    def params(self, labels, batch_size):
        mean, log_std = self.head(self.labels(labels, batch_size=batch_size)).chunk(2, dim=1)
        return mean, log_std.clamp(-7, 2)

    def log_prob(self, x, labels=None):
        """x: (B, C, H, W) in [0, 1] -> log-density (B,) in nats."""
        mean, log_std = self.params(labels, len(x))
        z = (x.flatten(1) - mean) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(1)

    def forward(self, batch):
        x = dequantize(batch["images"])
        nll = -self.log_prob(x, batch.get("labels")).mean() / x[0].numel()
        return nll, {"nll_per_dim": nll.detach()}


class TinyPixelGaussian(NeuralGenerativeModel):
    """Per-pixel Gaussian conditioned on the class (a test-only family)."""

    likelihood = "exact"
    conditional = True

    def __init__(
        self,
        hidden=None,
        *,
        preset="auto",
        epochs=None,
        max_steps=None,
        batch_size=64,
        optimizer="adam",
        lr=None,
        weight_decay=0.0,
        warmup_steps=None,
        lr_schedule="cosine",
        grad_clip=None,
        ema_decay=None,
        val_fraction=0.1,
        patience=None,
        device="auto",
        precision="auto",
        compile=False,
        num_workers=0,
        random_state=0,
        checkpoint_dir=None,
        checkpoint_every=None,
        sample_every=None,
    ):
        self.hidden = hidden
        self._set_training_params(locals())

    def _preset_values(self, preset, image_shape, n_images):
        values = super()._preset_values(preset, image_shape, n_images)
        values["hidden"] = 16 if preset == "quick" else 128
        values["epochs"] = 3 if preset == "quick" else 100
        return values

    def _build_modules(self):
        self.network_ = PixelGaussianNetwork(
            self.image_shape_, getattr(self, "n_classes_", None) or 1, self._param("hidden")
        )

    def _sample(self, n, labels, generator):
        dev = self._network_device()
        mean, log_std = self.network_.params(labels.to(dev) if labels is not None else None, n)
        eps = torch.randn(mean.shape, generator=generator).to(dev)
        return (mean + eps * log_std.exp()).clamp(0, 1).reshape(n, *self.image_shape_)

    def _log_likelihood(self, images):
        x = dequantize(images, score_generator()).to(self._network_device())
        return self.network_.log_prob(x)


NAME = "_test_pixel_gaussian"


@pytest.fixture
def registered():
    """Register the test family for load() and remove it again (the global registry must
    only ever list real models)."""
    registry.register(NAME)(TinyPixelGaussian)
    yield TinyPixelGaussian
    registry._REGISTRY.pop(NAME, None)
    TinyPixelGaussian.name = ""


@pytest.fixture(scope="module")
def data(digits):
    return digits.images[:400].numpy(), digits.labels[:400].numpy()


def quick(**kw):
    return TinyPixelGaussian(preset="quick", device="cpu", **kw)


def test_presets_resolve_and_explicit_values_win(data):
    X, y = data
    model = quick().fit(X, y)
    assert model.preset_ == "quick" and model.n_classes_ == 10
    assert (
        model.resolved_params_["hidden"] == 16
        and model.resolved_params_["epochs"] == 3
        and model.resolved_params_["lr"] == 1e-3
    )
    cfg = model.training_config_
    steps = 3 * (360 // 64)
    assert (
        cfg["epochs"] == 3 and cfg["lr"] == 1e-3 and cfg["warmup_steps"] == steps // 10
    )  # warm-up capped at 10% of the run
    assert model.training_summary_["steps"] == steps and len(model.history_) == 3
    explicit = quick(hidden=4, lr=5e-3, warmup_steps=0, epochs=1).fit(X, y)
    assert explicit.resolved_params_["hidden"] == 4 and explicit.training_config_["lr"] == 5e-3
    assert explicit.training_config_["warmup_steps"] == 0 and explicit.training_summary_["steps"] == 360 // 64
    only_steps = quick(max_steps=7).fit(X, y)  # max_steps alone: exactly that many, the preset's epochs do not cut it
    assert only_steps.training_config_["epochs"] is None and only_steps.training_summary_["steps"] == 7
    full = TinyPixelGaussian(preset="full", device="cpu", epochs=1)
    assert full._resolve_preset() == "full"
    assert TinyPixelGaussian(device="cpu")._resolve_preset() == "quick"  # auto on a CPU


def test_training_improves_the_likelihood(data):
    X, y = data
    short = quick(max_steps=1, warmup_steps=0).fit(X, y)
    longer = quick(epochs=15, lr=1e-2).fit(X, y)
    assert longer.score(X) > short.score(X) + 60  # nats per image


def test_get_params_clone_and_signature_contract():
    model = quick(hidden=8, lr=1e-2)
    params = model.get_params()
    assert set(TRAINING_PARAMS) <= set(params) and params["hidden"] == 8 and params["lr"] == 1e-2
    assert set(PRESET_CONTROLLED) <= set(TRAINING_PARAMS)
    copy = clone(model)
    assert copy.get_params() == params and copy is not model
    assert [k for k in vars(TinyPixelGaussian()) if k.endswith("_")] == []
    with pytest.raises(TypeError, match="missing: .*sample_every"):

        class Incomplete(NeuralGenerativeModel):  # noqa: F841
            def __init__(self, width=3, *, preset="auto"):
                self.width = width


def test_cross_val_score_works(data, no_warnings):
    X, y = data
    scores = cross_val_score(quick(epochs=1), X[:200], y[:200], cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_save_load_round_trip(registered, data, tmp_path):
    X, y = data
    model = registered(preset="quick", device="cpu", epochs=2, ema_decay=0.9).fit(X, y)
    model.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert type(loaded) is registered and loaded.get_params() == model.get_params()
    assert loaded.resolved_params_ == model.resolved_params_ and loaded.n_classes_ == 10
    assert not loaded.network_.training
    sa, sb = model.network_.state_dict(), loaded.network_.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(loaded.score_samples(X[:20]), model.score_samples(X[:20]))
    assert torch.equal(loaded.sample(12, y=3, seed=1), model.sample(12, y=3, seed=1))
    assert loaded.training_config_ == model.training_config_ and loaded.history_ == model.history_


def test_fit_resume_continues_exactly(data, tmp_path):
    X, y = data
    kw = dict(epochs=4, checkpoint_every=4, ema_decay=0.9)
    straight = quick(checkpoint_dir=str(tmp_path / "a"), **kw).fit(X, y)

    class Killed(TinyPixelGaussian):
        def _training_callbacks(self, config):
            from genlab.training import StopAfterSteps

            return [StopAfterSteps(10)]

    with pytest.raises(KeyboardInterrupt):
        Killed(preset="quick", device="cpu", checkpoint_dir=str(tmp_path / "b"), **kw).fit(X, y)
    assert load_latest(tmp_path / "b").step == 8
    resumed = quick(checkpoint_dir=str(tmp_path / "b"), **kw).fit(X, y, resume=True)
    sa, sb = straight.network_.state_dict(), resumed.network_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert straight.history_ == resumed.history_
    with pytest.raises(GenlabError, match="needs checkpoint_dir"):
        quick(epochs=1).fit(X, y, resume=True)


def test_sample_grids_and_metrics_in_checkpoint_dir(data, tmp_path):
    X, y = data
    quick(epochs=2, sample_every=1, checkpoint_dir=str(tmp_path)).fit(X, y)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    rows = read_metrics(tmp_path)
    assert "train_nll_per_dim" in rows[0] and "val_nll_per_dim" in rows[0]
    from PIL import Image

    grid = Image.open(tmp_path / "samples" / "epoch-0002.png")
    assert grid.size[0] > 8 * 8  # 64 images in an 8-wide grid, upscaled


def test_bad_training_parameters_name_the_argument(data):
    X, y = data
    with pytest.raises(GenlabError, match="preset='fast'"):
        TinyPixelGaussian(preset="fast").fit(X, y)
    with pytest.raises(GenlabError, match="optimizer='lbfgs'"):
        quick(optimizer="lbfgs").fit(X, y)
    with pytest.raises(GenlabError, match="batch_size=0"):
        quick(batch_size=0).fit(X, y)
    with pytest.raises(GenlabError, match="sample_every needs checkpoint_dir"):
        quick(sample_every=1).fit(X, y)


def test_random_state_controls_initialisation_and_order(data):
    X, y = data
    a = quick(epochs=1, random_state=3).fit(X, y)
    b = quick(epochs=1, random_state=3).fit(X, y)
    c = quick(epochs=1, random_state=4).fit(X, y)
    state = lambda m: torch.cat([p.flatten() for p in m.network_.parameters()])  # noqa: E731
    assert torch.equal(state(a), state(b)) and not torch.equal(state(a), state(c))
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    quick(epochs=1).fit(X, y)
    assert torch.equal(torch.rand(3), expected)  # fitting does not disturb the caller's random stream
