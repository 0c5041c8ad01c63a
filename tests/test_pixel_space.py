"""The diffusion data space (:mod:`genlab.diffusion.pixel_space`): cell edges, the map and
its inverse and its log-Jacobian against float64 NumPy (``np.interp``, finite differences),
the decode-by-cell-edges round trip, and (diffusion, flow-matching, GAN) saving, and loading
models saved before the option existed."""

import json
import math

import numpy as np
import pytest
import torch

import genlab
from genlab import GenlabError
from genlab.diffusion.pixel_space import HISTOGRAM_MIX, PixelSpace, histogram_edges, linear_edges
from genlab.likelihood import dequantize, quantize
from genlab.models.flow import FLOW_HISTOGRAM_MIX
from genlab.models.gan import GAN_HISTOGRAM_MIX


def _images(seed: int = 0, n: int = 40) -> torch.Tensor:
    """Digit-like uint8 images: mostly 0, a few levels used, one bright top value."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 6, 6, dtype=torch.uint8)
    images[:, :, 1:5, 2:4] = (16 * torch.randint(1, 17, (n, 1, 4, 2), generator=g)).clamp(max=255).to(torch.uint8)
    return images


def _numpy_edges(images: np.ndarray, mix: float) -> np.ndarray:
    counts = np.bincount(images.ravel().astype(np.int64), minlength=256).astype(np.float64)
    widths = (1 - mix) / 256 + mix * counts / counts.sum()
    return -1.0 + 2.0 * np.concatenate([[0.0], np.cumsum(widths)]) / widths.sum()


@pytest.mark.parametrize("mix", [0.0, 0.3, HISTOGRAM_MIX, 0.9])
def test_edges_match_numpy(mix):
    images = _images()
    edges = histogram_edges(images, mix)
    np.testing.assert_allclose(edges.numpy(), _numpy_edges(images.numpy(), mix), rtol=0, atol=1e-12)
    assert float(edges[0]) == -1.0 and float(edges[-1]) == 1.0
    if mix == 0.0:
        np.testing.assert_allclose(edges.numpy(), np.linspace(-1, 1, 257), atol=1e-12)
    else:  # the background's cell is the widest, by far
        widths = np.diff(edges.numpy())
        assert widths.argmax() == 0 and widths[0] > 50 * 2 / 256


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_map_and_inverse_match_numpy_interpolation(dtype):
    edges = histogram_edges(_images())
    space = PixelSpace(edges)
    u = torch.rand(4000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = torch.cat([u, torch.tensor([0.0, 1.0, 0.5 / 256, 16 / 256, 255.5 / 256], dtype=torch.float64)])
    levels = np.arange(257, dtype=np.float64)
    expected_x = np.interp(256 * u.numpy(), levels, edges.numpy())  # independent piecewise-linear oracle
    x = space.to_data(u.to(dtype))
    assert x.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(x.double().numpy(), expected_x, rtol=0, atol=tol)
    back = space.to_unit(torch.from_numpy(expected_x).to(dtype))
    np.testing.assert_allclose(back.double().numpy(), np.interp(expected_x, edges.numpy(), levels) / 256, atol=tol)
    # outside [-1, 1] clamps to the ends
    assert space.to_unit(torch.tensor([-3.0, 3.0], dtype=dtype)).tolist() == [0.0, 1.0]


def test_log_det_is_the_log_jacobian():
    images = _images(2, n=6)
    space = PixelSpace(histogram_edges(_images()))
    u = dequantize(images, torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-7  # central differences of np.interp inside each cell
    edges, levels = space.edges.numpy(), np.arange(257, dtype=np.float64)
    s = 256 * u.numpy().clip(h * 256 + 1e-9, None)
    s = np.clip(s, np.floor(s) + 1e-6, np.floor(s) + 1 - 1e-6)  # stay inside the pixel's cell
    deriv = (np.interp(s + 256 * h, levels, edges) - np.interp(s - 256 * h, levels, edges)) / (2 * h)
    expected = np.log(deriv).reshape(len(images), -1).sum(1)
    np.testing.assert_allclose(space.log_det(images).numpy(), expected, rtol=1e-6)
    # the linear map: D log 2
    linear = PixelSpace()
    assert linear.linear
    np.testing.assert_allclose(linear.log_det(images).numpy(), images[0].numel() * math.log(2.0))
    torch.testing.assert_close(linear.to_data(u), 2 * u - 1)


def test_density_stays_normalised():
    """p(u) = p(x) |dx/du| integrates to 1 over [0, 1] for a density over [-1, 1]: here
    p(x) = 1/2, so sum over levels of (1/256) * exp(log_det of one pixel) / 2 = 1."""
    space = PixelSpace(histogram_edges(_images()))
    per_level = space.log_det(torch.arange(256, dtype=torch.uint8).reshape(256, 1)).exp()
    assert abs(float((per_level / 256 / 2).sum()) - 1.0) < 1e-12


@pytest.mark.parametrize("noise", [True, False])
def test_decoding_by_cell_edges_returns_every_pixel(noise):
    images = torch.randint(0, 256, (20, 1, 8, 8), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    images[:10] = 0
    space = PixelSpace(histogram_edges(images))
    x = space.to_data(dequantize(images, torch.Generator().manual_seed(5), noise=noise))
    assert torch.equal(quantize(space.to_unit(x)), images)


def test_bad_edges_are_refused():
    with pytest.raises(GenlabError, match="257"):
        PixelSpace(torch.zeros(10))
    bad = linear_edges().clone()
    bad[5] = bad[4]
    with pytest.raises(GenlabError, match="increase"):
        PixelSpace(bad)
    with pytest.raises(GenlabError, match="mix"):
        histogram_edges(_images(), 1.0)


TINY = {
    "diffusion": dict(width=8, max_steps=3, elbo_points=2, steps=3, device="cpu", warmup_steps=0, val_fraction=0.0),
    "flow-matching": dict(
        width=8,
        max_steps=3,
        steps=2,
        likelihood_steps=2,
        likelihood_probes=1,
        device="cpu",
        warmup_steps=0,
        val_fraction=0.0,
    ),
    "flow": dict(n_levels=2, depth=1, width=8, n_blocks=0, max_steps=3, device="cpu", warmup_steps=0, val_fraction=0.0),
    "gan": dict(
        g_width=8,
        d_width=8,
        latent_dim=4,
        max_steps=3,
        device="cpu",
        warmup_steps=0,
        val_fraction=0.0,
        selection="last",
    ),
}


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny_models(request, digits):
    torch.set_num_threads(1)
    X = digits.images[:64].numpy()
    family = request.param
    return X, {
        space: genlab.make_model(family, data_space=space, **TINY[family]).fit(X) for space in ("histogram", "linear")
    }


def test_defaults_and_the_histogram_space_round_trips(tiny_models, tmp_path):
    X, models = tiny_models
    model = models["histogram"]
    # the default of every family; a GAN with a narrower background cell (mix 0.1: at the
    # diffusion family's 0.5 its FD got worse, D judging the dequantisation texture of the
    # cell), a flow with a wider one (0.9: better bits/dim, FD and pixel TV)
    assert type(model)().data_space == "histogram"
    family_mix = {"gan": GAN_HISTOGRAM_MIX, "flow": FLOW_HISTOGRAM_MIX}
    assert model.histogram_mix == family_mix.get(model.name, HISTOGRAM_MIX)
    assert isinstance(model.pixel_edges_, torch.Tensor) and models["linear"].pixel_edges_ is None
    np.testing.assert_allclose(model.pixel_edges_.numpy(), _numpy_edges(X, model.histogram_mix), atol=1e-12)
    other = type(model)(data_space="histogram", histogram_mix=0.9, **TINY[model.name]).fit(X)
    np.testing.assert_allclose(other.pixel_edges_.numpy(), _numpy_edges(X, 0.9), atol=1e-12)
    with pytest.raises(GenlabError, match="histogram_mix"):
        type(model)(histogram_mix=1.0, **TINY[model.name]).fit(X)
    assert not model.network_.pixel_space.linear
    model.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert loaded.data_space == "histogram"
    assert torch.equal(loaded.sample(4, seed=2), model.sample(4, seed=2))
    if model.name != "gan":  # a GAN has no likelihood
        scores = model.score_samples(X[:4])
        np.testing.assert_array_equal(loaded.score_samples(X[:4]), scores)
        assert np.isfinite(scores).all()


def test_models_saved_before_the_option_load_with_the_linear_space(tiny_models, tmp_path):
    X, models = tiny_models
    models["linear"].save(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    config = json.loads(config_file.read_text())
    del config["params"]["data_space"], config["fitted"]["pixel_edges_"]  # as written before the option
    config_file.write_text(json.dumps(config))
    loaded = genlab.load_model(tmp_path / "old")
    assert loaded.data_space == "linear" and getattr(loaded, "pixel_edges_", None) is None
    assert loaded.network_.pixel_space.linear
    assert torch.equal(loaded.sample(4, seed=2), models["linear"].sample(4, seed=2))
    if loaded.name != "gan":
        np.testing.assert_array_equal(loaded.score_samples(X[:4]), models["linear"].score_samples(X[:4]))


def test_a_histogram_config_without_edges_is_refused(tiny_models, tmp_path):
    _, models = tiny_models
    models["linear"].save(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    config = json.loads(config_file.read_text())
    config["params"]["data_space"] = "histogram"
    config_file.write_text(json.dumps(config))
    with pytest.raises(GenlabError, match="pixel_edges_"):
        genlab.load_model(tmp_path / "m")
