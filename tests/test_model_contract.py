"""The one test template every registered genlab model passes."""

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score

import genlab
from genlab import GenlabError
from genlab.models import GenerativeModel, get_model_class

# tiny but real settings for each model: (params, a grid for GridSearchCV)
TINY = {
    "uniform": ({}, {}),
    "gaussian": ({"covariance_type": "diag", "reg_covar": 1e-3}, {"covariance_type": ["diag", "full"]}),
    "gmm": ({"n_components": 3, "reg_covar": 1e-3, "max_iter": 20}, {"n_components": [2, 3]}),
    "kde": ({"bandwidth": 0.1}, {"bandwidth": [0.05, 0.1]}),
    "diffusion": (
        {"width": 4, "max_steps": 3, "steps": 2, "elbo_points": 2, "device": "cpu"},
        {"prediction": ["v", "eps"]},
    ),
    "flow": (
        {"n_levels": 2, "depth": 1, "width": 8, "n_blocks": 0, "max_steps": 5, "device": "cpu"},
        {"coupling": ["affine", "spline"]},
    ),
    "flow-matching": (
        {
            "width": 8,
            "n_res_blocks": 1,
            "max_steps": 3,
            "steps": 2,
            "likelihood_steps": 2,
            "likelihood_probes": 2,
            "device": "cpu",
        },
        {"sampler": ["euler", "heun"]},
    ),
    "gan": (
        {"latent_dim": 4, "g_width": 4, "d_width": 4, "max_steps": 3, "selection": "last", "device": "cpu"},
        {"loss": ["ns", "hinge"]},
    ),
    "vae": (
        {
            "latent_dim": 2,
            "width": 8,
            "n_blocks": 0,
            "max_steps": 10,
            "latent_components": 2,
            "iwae_samples": 10,
            "device": "cpu",
        },
        {"latent_dim": [2, 3]},
    ),
    "wae": (
        {"latent_dim": 2, "width": 8, "n_blocks": 0, "max_steps": 10, "latent_components": 2, "device": "cpu"},
        {"divergence": ["mmd", "cw"]},
    ),
}


def has_likelihood(name):
    return get_model_class(name).likelihood != "none"


def sample_moment_score(estimator, X, y=None):
    """A scoring for models without a likelihood (sklearn's default ``score`` raises for
    them): minus the squared distance between the mean pixel of samples and of X."""
    samples = estimator.sample(len(X), seed=0).float()
    return -float((samples.mean(0) - torch.as_tensor(np.asarray(X)).float().mean(0)).pow(2).sum())


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run far faster on one thread (two threads on a busy 2-core machine
    made a 10-step fit take 10-20 s instead of 0.4 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_registered_model_has_a_tiny_config():
    assert set(genlab.list_models()) == set(TINY)


@pytest.fixture(params=sorted(TINY))
def name(request):
    return request.param


def make(name):
    return genlab.make_model(name, **TINY[name][0])


def test_fit_sample_score(name, tiny_images, no_warnings):
    model = make(name).fit(tiny_images)
    assert model.image_shape_ == (1, 8, 8)
    samples = model.sample(7, seed=1)
    assert samples.dtype == torch.uint8 and samples.shape == (7, 1, 8, 8)
    assert torch.equal(samples, model.sample(7, seed=1))  # seeded draws repeat
    if not has_likelihood(name):
        with pytest.raises(GenlabError, match="has no likelihood"):
            model.score_samples(tiny_images[:10])
        return
    ll = model.score_samples(tiny_images[:10])
    assert ll.shape == (10,) and ll.dtype == np.float64 and np.all(np.isfinite(ll))
    assert model.score(tiny_images[:10]) == pytest.approx(ll.mean())
    assert model.bits_per_dim(tiny_images[:10]) == pytest.approx((-ll.mean() + 64 * np.log(256)) / (64 * np.log(2)))
    assert type(model).likelihood in ("exact", "bound", "estimate", "none")


def test_hyper_parameters_are_stored_untouched(name):
    cls = get_model_class(name)
    params = cls().get_params()
    again = cls(**params).get_params()
    assert params.keys() == again.keys()
    fitted_state = [k for k in vars(cls()) if k.endswith("_")]
    assert fitted_state == []


def test_save_load_round_trip(name, tiny_images, tmp_path, no_warnings):
    model = make(name).fit(tiny_images)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"] == name
    loaded = genlab.load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params().keys() == model.get_params().keys()
    if has_likelihood(name):
        np.testing.assert_allclose(
            loaded.score_samples(tiny_images[:10]), model.score_samples(tiny_images[:10]), rtol=1e-12
        )
    assert torch.equal(loaded.sample(5, seed=3), model.sample(5, seed=3))
    assert isinstance(GenerativeModel.load(tmp_path / "m"), type(model))


def test_sklearn_clone_cross_val_score_and_grid_search(name, tiny_images, no_warnings):
    model = make(name)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and copy is not model
    scoring = None if has_likelihood(name) else sample_moment_score
    scores = cross_val_score(model, tiny_images, cv=5, scoring=scoring)
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    grid = TINY[name][1]
    if grid:
        search = GridSearchCV(model, grid, cv=5, scoring=scoring).fit(tiny_images)
        assert search.best_params_.keys() == grid.keys()
        assert np.isfinite(search.best_score_)


def test_not_fitted_and_bad_input(name, tiny_images, no_warnings):
    model = make(name)
    with pytest.raises(NotFittedError):
        model.sample(2)
    with pytest.raises(NotFittedError):
        model.score_samples(tiny_images)
    with pytest.raises(GenlabError, match="dtype float32"):
        model.fit(tiny_images.astype(np.float32) / 255)
    with pytest.raises(GenlabError, match="shape"):
        model.fit(tiny_images.reshape(120, -1))
    with pytest.raises(GenlabError, match=r"0\.\.255"):
        model.fit(tiny_images.astype(np.int32) * 300)
    with pytest.raises(GenlabError, match="no images"):
        model.fit(tiny_images[:0])
    model.fit(tiny_images)
    with pytest.raises(GenlabError, match=r"fitted on \(1, 8, 8\)" if has_likelihood(name) else "has no likelihood"):
        model.score_samples(np.zeros((3, 1, 4, 4), np.uint8))
    with pytest.raises(GenlabError, match="n=0 must be >= 1"):
        model.sample(0)
    with pytest.raises(GenlabError, match="not class-conditional"):
        model.sample(2, y=1)


def test_load_rejects_non_model_folders(tmp_path):
    with pytest.raises(GenlabError, match="not a model folder"):
        genlab.load_model(tmp_path / "nothing")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model": "warp-drive", "params": {}}')
    with pytest.raises(GenlabError, match="unknown model 'warp-drive'"):
        genlab.load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(GenlabError, match="not valid JSON"):
        genlab.load_model(tmp_path / "m")


def test_make_model_rejects_unknown_parameters():
    with pytest.raises(GenlabError, match=r"gmm: unknown parameter\(s\) n_comp; valid: .*n_components"):
        genlab.make_model("gmm", n_comp=3)


def test_uniform_is_exactly_eight_bits_per_dim(tiny_images):
    assert genlab.make_model("uniform").fit(tiny_images).bits_per_dim(tiny_images) == 8.0


def test_classical_models_beat_uniform_on_held_out_digits(digits_split, no_warnings):
    train, test = digits_split
    bpd = {
        n: genlab.make_model(n, **TINY[n][0]).fit(train.images).bits_per_dim(test.images)
        for n in ("uniform", "gaussian", "gmm", "kde")
    }
    assert bpd["uniform"] == 8.0
    assert bpd["gaussian"] < 7.5 and bpd["gmm"] < 7.5 and bpd["kde"] < 8.0
