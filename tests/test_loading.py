"""The validating loader of saved models: every malformed or hostile run folder raises a
GenlabError naming the file and the problem, never another exception and never a model
with foreign state (fuzzed with hypothesis, plus targeted cases)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import genlab
from genlab.errors import GenlabError
from genlab.models import GenerativeModel

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
VAE = {"latent_dim": 2, "width": 8, "n_blocks": 0, "max_steps": 2, "latent_components": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits):
    """Folders of a fitted diag Gaussian, GMM, KDE and two tiny VAEs (widths 8 and 16)."""
    root = tmp_path_factory.mktemp("saved")
    X = digits.images[:60].numpy()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        genlab.make_model("gaussian", covariance_type="diag", reg_covar=1e-3).fit(X).save(root / "gaussian")
        genlab.make_model("gmm", n_components=2, covariance_type="diag", reg_covar=1e-3, max_iter=5).fit(X).save(
            root / "gmm"
        )
        genlab.make_model("kde", bandwidth=0.1).fit(X).save(root / "kde")
        genlab.make_model("vae", **VAE).fit(X).save(root / "vae")
        genlab.make_model("vae", **{**VAE, "width": 16}).fit(X).save(root / "vae16")
    return root


def copy(saved: Path, name: str, dest: Path) -> Path:
    out = dest / name
    shutil.copytree(saved / name, out)
    return out


def edit_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def expect_error(folder: Path, pattern: str, file: str = "config.json") -> str:
    with pytest.raises(GenlabError, match=pattern) as info:
        GenerativeModel.load(folder)
    message = str(info.value)
    assert file in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ["gaussian", "gmm", "kde", "vae"])
def test_saved_models_still_load(saved, name, digits):
    model = GenerativeModel.load(saved / name)
    assert model.sample(3, seed=0).shape == (3, 1, 8, 8)
    if name != "vae":
        assert np.all(np.isfinite(model.score_samples(digits.images[:5])))


# ---------------------------------------------------------------------- config.json structure
@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda c: c.update(model=["gaussian"]), "'model' must be a model name \\(a string\\), got list"),
        (lambda c: c.update(model={"__class__": "os.system"}), "'model' must be a model name"),
        (lambda c: c.update(model="no-such-model"), "unknown model 'no-such-model'"),
        (lambda c: c.update(extra=1), "unknown key\\(s\\) 'extra'"),
        (lambda c: c.update(params=[1, 2]), "'params' must be an object"),
        (lambda c: c.update(fitted="x"), "'fitted' must be an object"),
        (lambda c: c["params"].update(colour="red"), "unknown parameter\\(s\\) colour for gaussian"),
        (lambda c: c["params"].update(covariance_type="bogus"), "covariance_type='bogus' is not valid"),
        (lambda c: c["params"].update(reg_covar=-1.0), "reg_covar=-1.0 must be >= 0"),
        (lambda c: c["params"].update(reg_covar={"__float__": "nan"}), "reg_covar=nan must be a finite number"),
        (lambda c: c["params"].update(reg_covar={"__float__": "os.system"}), "is not one of 'nan', 'inf', '-inf'"),
        (lambda c: c["fitted"].update(__class__="GenerativeModel"), "fitted.__class__: not a fitted attribute name"),
        (lambda c: c["fitted"].update(_sample="x"), "fitted._sample: not a fitted attribute name"),
        (lambda c: c["fitted"].update(fit=1), "fitted.fit: not a fitted attribute name"),
        (lambda c: c["fitted"].update(n_dims_=3), "fitted.n_dims_: names an attribute of Gaussian itself"),
        (lambda c: c["fitted"].update(device_="cpu"), "fitted.device_: names an attribute of Gaussian itself"),
        (lambda c: c["fitted"].update({"a b_": 1}), "not a fitted attribute name"),
        (
            lambda c: c["fitted"].update(mean_={"__tensor__": "no.such.tensor"}),
            "fitted.mean_: refers to tensor 'no.such.tensor', which is not in model.safetensors",
        ),
        (lambda c: c["fitted"].update(mean_={"__tensor__": ["x"]}), "tensor reference \\['x'\\] is not a name"),
        (lambda c: c["fitted"].update(mean_={"__tensor__": "fitted.mean_", "x": 1}), "must have no other keys"),
        (lambda c: c["fitted"].update(image_shape_={"__tuple__": [1, 100000, 100000]}), "is not an image shape"),
        (lambda c: c["fitted"].update(image_shape_="abc"), "is not an image shape"),
        (lambda c: c["fitted"].pop("image_shape_"), "fitted.image_shape_ = None is not an image shape"),
        (lambda c: c["fitted"].update(mean_={"__module__": "mean_"}), "builds no network|network"),
        (lambda c: c["fitted"].update(extra_=json.loads("[" * 40 + "]" * 40)), "nested more than 32 levels"),
    ],
)
def test_bad_configs_are_refused_with_one_line_naming_the_file(saved, tmp_path, change, pattern):
    folder = copy(saved, "gaussian", tmp_path)
    edit_config(folder, change)
    expect_error(folder, pattern)


def test_image_shape_that_disagrees_with_the_tensors(saved, tmp_path):
    folder = copy(saved, "gaussian", tmp_path)
    edit_config(folder, lambda c: c["fitted"].update(image_shape_={"__tuple__": [1, 4, 4]}))
    expect_error(folder, r"fitted\.mean_: shape \(64,\), but a model of images \(1, 4, 4\) needs \(16,\)")


def test_kde_bandwidth_is_revalidated(saved, tmp_path):
    folder = copy(saved, "kde", tmp_path)
    edit_config(folder, lambda c: c["params"].update(bandwidth=-0.5))
    expect_error(folder, r"bandwidth=-0\.5 must be > 0")
    edit_config(folder, lambda c: (c["params"].update(bandwidth=0.1), c["fitted"].update(bandwidth_=0.0)))
    expect_error(folder, r"fitted\.bandwidth_=0\.0 must be > 0")


def test_neural_training_parameters_are_revalidated(saved, tmp_path):
    folder = copy(saved, "vae", tmp_path)
    edit_config(folder, lambda c: c["params"].update(batch_size=0))
    expect_error(folder, "batch_size=0 must be >= 1")
    edit_config(folder, lambda c: c["params"].update(batch_size=64, beta=-1.0))
    expect_error(folder, r"beta=-1\.0 must be >= 0")


def test_deeply_nested_json_is_a_clear_error(saved, tmp_path):
    folder = copy(saved, "gaussian", tmp_path)
    (folder / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    expect_error(folder, "nested too deeply|not a genlab model config")


# ---------------------------------------------------------------------- model.safetensors
def test_weights_of_the_wrong_shape(saved, tmp_path):
    folder = copy(saved, "vae", tmp_path)
    shutil.copy(saved / "vae16" / "model.safetensors", folder / "model.safetensors")
    expect_error(
        folder,
        r"weight network_\.\S+ is float32 \(\d+(, \d+)*\) but the network declares float32 \(",
        "model.safetensors",
    )


def test_weights_of_another_dtype(saved, tmp_path):
    folder = copy(saved, "vae", tmp_path)
    tensors = load_file(folder / "model.safetensors")
    name = next(k for k in tensors if k.startswith("network_.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name].double()
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, rf"weight {name} is float64 .* declares float32", "model.safetensors")


def test_weights_of_another_family(saved, tmp_path):
    folder = copy(saved, "vae", tmp_path)
    network = {k: v for k, v in load_file(saved / "vae" / "model.safetensors").items() if not k.startswith("network_.")}
    network["network_.unet.weight"] = torch.zeros(3)
    save_file(network, folder / "model.safetensors")
    expect_error(folder, r"weight\(s\) of the vae network missing", "model.safetensors")


def test_tensors_the_config_does_not_use(saved, tmp_path):
    folder = copy(saved, "gaussian", tmp_path)
    tensors = load_file(folder / "model.safetensors")
    tensors["stowaway"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, r"1 tensor\(s\) that config\.json does not refer to \(stowaway\)", "model.safetensors")


@pytest.mark.parametrize("name", ["gaussian", "vae"])
def test_nan_weights_are_refused(saved, tmp_path, name):
    folder = copy(saved, name, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    key = next(k for k, t in sorted(tensors.items()) if t.is_floating_point() and t.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, rf"tensor {key} holds NaN values", "model.safetensors")


def test_garbage_weights_file(saved, tmp_path):
    folder = copy(saved, "gaussian", tmp_path)
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    expect_error(folder, "not a readable safetensors file", "model.safetensors")


# ---------------------------------------------------------------------- fuzzing
JSON_LEAVES = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
KEYS = st.text(max_size=6) | st.sampled_from(
    [
        "__tensor__",
        "__ndarray__",
        "__tuple__",
        "__list__",
        "__dict__",
        "__float__",
        "__module__",
        "__class__",
        "_sample",
        "image_shape_",
        "mean_",
        "network_",
        "model",
        "params",
        "fitted",
        "nan",
        "fitted.mean_",
    ]
)
JSON = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _replace(node, path, value):
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


def _load_only_genlab_errors(folder: Path) -> None:
    try:
        model = GenerativeModel.load(folder)
    except GenlabError as exc:
        assert "\n" not in str(exc)
        return
    # whatever loaded must be usable: a model, fitted on an image shape
    assert isinstance(model, GenerativeModel) and len(model.image_shape_) == 3


@pytest.mark.parametrize("name", ["gaussian", "vae"])
@FUZZ
@given(data=st.data())
def test_fuzzed_configs_raise_only_genlab_errors(saved, tmp_path_factory, name, data):
    folder = copy(saved, name, tmp_path_factory.mktemp("fuzz"))
    config = json.loads((folder / "config.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(config))
        path = data.draw(st.sampled_from(paths))
        if data.draw(st.booleans()) or not path:
            config = (
                _replace(config, path, data.draw(JSON))
                if path
                else data.draw(JSON | st.dictionaries(KEYS, JSON, max_size=5))
            )
        else:  # add or drop a key next to the chosen node
            parent = config
            for p in path[:-1]:
                parent = parent[p]
            if isinstance(parent, dict):
                if data.draw(st.booleans()):
                    parent.pop(path[-1], None)
                else:
                    parent[data.draw(KEYS)] = data.draw(JSON)
    (folder / "config.json").write_text(json.dumps(config))
    _load_only_genlab_errors(folder)


DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]


@pytest.mark.parametrize("name", ["gaussian", "vae"])
@FUZZ
@given(data=st.data())
def test_fuzzed_weight_files_raise_only_genlab_errors(saved, tmp_path_factory, name, data):
    folder = copy(saved, name, tmp_path_factory.mktemp("fuzz"))
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["drop", "reshape", "dtype", "add", "nan"]))
        key = data.draw(st.sampled_from(names))
        if action == "drop":
            tensors.pop(key, None)
        elif action == "reshape":
            shape = data.draw(st.lists(st.integers(0, 5), max_size=3))
            tensors[key] = torch.zeros(shape)
        elif action == "dtype" and key in tensors:
            tensors[key] = tensors[key].to(data.draw(st.sampled_from(DTYPES)))
        elif action == "add":
            tensors[data.draw(st.sampled_from([key + ".x", "network_.extra", "x", key]))] = torch.ones(2)
        elif key in tensors and tensors[key].is_floating_point() and tensors[key].numel():
            tensors[key] = tensors[key].clone()
            tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    _load_only_genlab_errors(folder)


@FUZZ
@given(blob=st.binary(max_size=256))
def test_random_bytes_as_weights_or_config(saved, tmp_path_factory, blob):
    folder = copy(saved, "gaussian", tmp_path_factory.mktemp("fuzz"))
    (folder / "model.safetensors").write_bytes(blob)
    _load_only_genlab_errors(folder)
    shutil.copy(saved / "gaussian" / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_bytes(blob)
    _load_only_genlab_errors(folder)


def test_a_declared_parameter_schema_is_checked_on_load(saved, tmp_path):
    from genlab.models.gaussian import Gaussian

    assert "random_state" in Gaussian.parameter_schema  # every family declares its parameters now
    folder = copy(saved, "gaussian", tmp_path)
    edit_config(folder, lambda c: c["params"].update(random_state=-5))
    expect_error(folder, "random_state=-5")
