"""No silently wrong numbers: degenerate hyper-parameters are refused at fit, non-finite
results and NaN weights raise instead of giving black images or ``nan ± nan``, JSON is
strict, prompts are never cut silently, and label values that are not 0..K-1 survive."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import genlab
from genlab.errors import GenlabError, GenlabWarning
from genlab.io import read_json, write_json
from genlab.models import GenerativeModel
from genlab.models.validation import check_labels, encode_labels

from .markers import require_extra

VAE = {"latent_dim": 2, "width": 8, "n_blocks": 0, "max_steps": 2, "latent_components": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def X(digits):
    return digits.images[:60].numpy()


# ---------------------------------------------------------------------- degenerate hyper-parameters
@pytest.mark.parametrize(
    "name, params, pattern",
    [
        ("kde", {"bandwidth": 1e30}, r"bandwidth=1e\+30 is outside 1e-06\.\.1000"),
        ("kde", {"bandwidth": 1e-300}, r"bandwidth=1e-300 is outside 1e-06\.\.1000"),
        ("kde", {"bandwidth": float("nan")}, r"bandwidth=nan must be a finite number"),
        ("kde", {"bandwidth": "cv", "bandwidth_grid": [0.1, 1e30]}, r"bandwidth_grid=1e\+30 is outside"),
        ("kde", {"bandwidth": "cv", "bandwidth_grid": []}, r"bandwidth_grid is empty"),
        ("gaussian", {"reg_covar": 1e30}, r"reg_covar=1e\+30 must be <= 1000"),
        ("gmm", {"reg_covar": 1e300, "n_components": 2}, r"reg_covar=1e\+300 must be <= 1000"),
    ],
)
def test_meaningless_values_are_refused_at_fit(X, name, params, pattern):
    with pytest.raises(GenlabError, match=pattern):
        genlab.make_model(name, **params).fit(X)


@pytest.mark.parametrize("h", [1e-6, 1e-3, 10.0, 1e3])
def test_kde_bandwidths_at_the_ends_of_the_range_give_finite_scores(X, h):
    model = genlab.make_model("kde", bandwidth=h).fit(X[:40])
    assert np.all(np.isfinite(model.score_samples(X[40:])))
    assert model.sample(3, seed=0).dtype == torch.uint8


# ---------------------------------------------------------------------- non-finite results and weights
def test_non_finite_log_likelihood_is_an_error_not_a_number(X):
    model = genlab.make_model("gaussian", covariance_type="diag", reg_covar=1e-3).fit(X)
    model.mean_ = model.mean_.clone()
    model.mean_[0] = float("nan")
    with pytest.raises(GenlabError, match=r"gaussian: non-finite log-likelihood \(nan\) for 60 of 60 images"):
        model.score(X)
    with pytest.raises(GenlabError, match="generated images hold .* NaN/inf pixel values"):
        model.sample(4, seed=0)


@pytest.fixture(scope="module")
def nan_vae(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = genlab.make_model("vae", **VAE).fit(X)
    with torch.no_grad():
        for p in model.network_.parameters():  # a diverged run: every weight NaN
            p.fill_(float("nan"))
    return model


def test_nan_network_weights_do_not_sample_black_images(nan_vae):
    with pytest.raises(GenlabError, match="NaN/inf pixel values: the model's weights are not finite"):
        nan_vae.sample(4, seed=0)


def test_nan_network_weights_do_not_score_nan(nan_vae, X):
    with pytest.raises(GenlabError, match="non-finite log-likelihood"):
        nan_vae.score(X[:5])


def test_nan_weights_are_never_saved(nan_vae, tmp_path):
    with pytest.raises(GenlabError, match=r"cannot save vae to .*: tensor network_\.\S+ holds NaN values"):
        nan_vae.save(tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- strict JSON
def _strict_loads(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_with_null_and_a_reason(tmp_path):
    path = write_json(
        tmp_path / "metrics.json",
        {
            "score": {"mean": float("nan"), "std": np.float32(np.inf)},
            "ok": np.float64(1.5),
            "n": np.int64(3),
            "list": [torch.tensor(-float("inf")), 2],
        },
    )
    data = _strict_loads(path.read_text())
    assert (
        data["score"] == {"mean": None, "std": None}
        and data["ok"] == 1.5
        and data["n"] == 3
        and data["list"] == [None, 2]
    )
    assert data["non_finite_values"] == {
        "score.mean": "nan: not representable in JSON",
        "score.std": "inf: not representable in JSON",
        "list.0": "-inf: not representable in JSON",
    }
    assert read_json(path) == data


def test_json_without_a_place_for_the_reason_is_refused(tmp_path):
    with pytest.raises(GenlabError, match="cannot write nan"):
        write_json(tmp_path / "x.json", [1.0, float("nan")])
    assert not (tmp_path / "x.json").exists()


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=10,
    )
)
def test_whatever_genlab_writes_is_strict_json(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("json") / "v.json"
    try:
        write_json(path, {"value": value})
    except GenlabError:  # pragma: no cover - a dict always has room for the reason
        raise
    _strict_loads(path.read_text())


def test_saved_models_write_strict_json(X, tmp_path):
    model = genlab.make_model("gmm", n_components=2, covariance_type="diag", reg_covar=1e-3, max_iter=3).fit(X)
    model.lower_bound_ = float("-inf")  # a fitted float that JSON cannot hold
    model.save(tmp_path / "m")
    _strict_loads((tmp_path / "m" / "config.json").read_text())
    assert GenerativeModel.load(tmp_path / "m").lower_bound_ == float("-inf")


# ---------------------------------------------------------------------- label values
def test_check_labels_maps_label_values_and_names():
    assert check_labels([10, 2, 2], 3, classes=[10, 2]).tolist() == [0, 1, 1]
    assert check_labels(10**15, 2, classes=[0, 10**15]).tolist() == [1, 1]
    assert check_labels(["dog", "cat"], 2, classes=["cat", "dog"]).tolist() == [1, 0]
    assert check_labels([1, 0], 2, classes=["cat", "dog"]).tolist() == [1, 0]  # indices of named classes
    assert check_labels([3, 1], 2, classes=[0, 1, 2, 3]).tolist() == [3, 1]  # the usual 0..K-1
    with pytest.raises(GenlabError, match=r"y: label 1 is unknown; the model knows labels 0, 1000000000000000"):
        check_labels(1, 2, classes=[0, 10**15])
    with pytest.raises(GenlabError, match=r"y: label 'cow' is unknown; the model knows 'cat', 'dog'"):
        check_labels("cow", 1, classes=["cat", "dog"])
    with pytest.raises(GenlabError, match=r"label 4 is unknown; the model knows labels 0\.\.3"):
        check_labels(4, 1, n_classes=4, classes=[0, 1, 2, 3])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30))
def test_label_values_round_trip(values):
    codes, classes = encode_labels(values, len(values))
    assert sorted(set(values)) == classes
    assert codes.tolist() == [classes.index(v) for v in values]
    assert torch.equal(check_labels(values, len(values), classes=classes), codes)


def test_conditional_model_keeps_and_accepts_its_label_values(X, tmp_path):
    y = np.where(np.arange(len(X)) % 2 == 0, 0, 10**15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = genlab.make_model("vae", condition="label", **VAE).fit(X, y)
    assert model.classes_ == [0, 10**15] and model.n_classes_ == 2
    assert model.sample(2, y=10**15, seed=0).shape == (2, 1, 8, 8)
    with pytest.raises(GenlabError, match="label 1 is unknown; the model knows labels 0, 1000000000000000"):
        model.sample(1, y=1)
    model.save(tmp_path / "m")
    loaded = GenerativeModel.load(tmp_path / "m")
    assert loaded.classes_ == [0, 10**15]
    assert torch.equal(loaded.sample(2, y=[0, 10**15], seed=1), model.sample(2, y=[0, 10**15], seed=1))


def test_label_values_from_an_npz_dataset_are_kept(X, tmp_path):
    y = np.where(np.arange(len(X)) % 3 == 0, 7, 10**15)
    np.savez(tmp_path / "d.npz", x=X, y=y)
    data = genlab.load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.class_names == ["7", "1000000000000000"] and set(data.labels.tolist()) == {0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = genlab.make_model("vae", condition="label", **VAE).fit(data)
    assert model.classes_ == [7, 10**15]
    assert model.sample(1, y=7, seed=0).shape == (1, 1, 8, 8)


def test_named_classes_from_a_folder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = genlab.load_dataset(f"folder:{tmp_path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = genlab.make_model("vae", condition="label", **{**VAE, "latent_components": 1}).fit(data)
    assert model.classes_ == ["cat", "dog"]
    assert torch.equal(model.sample(2, y="dog", seed=0), model.sample(2, y=1, seed=0))
    with pytest.raises(GenlabError, match="label 'cow' is unknown"):
        model.sample(1, y="cow")


# ---------------------------------------------------------------------- prompts


@pytest.fixture(scope="module")
def encoder():
    require_extra("text")
    from genlab.text import TextEncoder

    return TextEncoder(device="cpu")


def test_prompts_longer_than_the_stated_limit_are_refused(encoder):
    with pytest.raises(
        GenlabError,
        match=r"the prompt has 100,799 characters; at most 1,000 are accepted \(the text encoder reads only its first 256 tokens\)",
    ):
        encoder.encode("a thick seven " * 7200)


def test_prompts_cut_to_the_token_window_say_so(encoder):
    long = " ".join(["a"] * 300)  # 599 characters (under 1,000) but 302 tokens (over 256)
    with pytest.warns(
        GenlabWarning, match=r"1 prompt\(s\) longer than the text encoder's window of 256 tokens were cut"
    ):
        encoder.encode(["a thin one", long])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["a thin one", "a bold zero"])  # short prompts: no warning
