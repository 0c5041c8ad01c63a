"""The optional standard FID (genlab.metrics.inception, `--inception-weights`), offline.

The real FID Inception-v3 weights cannot be downloaded here, so a file with the right
architecture and random weights stands in for them: torch-fidelity's network is built
without loading anything and its state dict saved as torch-fidelity's own file is. Every
forward pass runs the real network at 299 x 299, so the image sets are tiny.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import socket
import sys
import types
import urllib.request

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.metrics import inception
from genlab.metrics.frechet import frechet_distance


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


@contextlib.contextmanager
def _stand_in_torchvision():
    """torch-fidelity's package imports its CLIP/VGG/DINOv2 extractors and datasets, which import
    torchvision; the Inception-v3 extractor does not use it. On a CPU torch with PyPI's (CUDA)
    torchvision that import fails, so give it inert modules while torch-fidelity imports."""
    names = [
        "torchvision",
        "torchvision.datasets",
        "torchvision.models",
        "torchvision.transforms",
        "torchvision.transforms.functional",
    ]
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: _StandInModule(name) for name in names}
    for name, module in modules.items():
        module.__path__ = []
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def fidelity_inception_module():
    """torch_fidelity.feature_extractor_inceptionv3, imported even where torchvision is broken."""
    if importlib.util.find_spec("torch_fidelity") is None:
        pytest.skip("torch-fidelity is not installed (pip install 'genlab[fid]')")
    try:
        import torch_fidelity  # noqa: F401
    except Exception:  # noqa: BLE001 - torchvision missing or built for another torch
        with _stand_in_torchvision():
            import torch_fidelity  # noqa: F401
    return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the 299 x 299 network on a shared 2-core machine: two threads contend and run ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_caches():
    inception._load_network.cache_clear()
    inception._reference_cache.clear()
    yield
    inception._load_network.cache_clear()
    inception._reference_cache.clear()


@pytest.fixture(scope="module")
def fake_state(fidelity_inception_module):
    """torch-fidelity's FID Inception-v3 state dict with random (He-normal) convolutions."""
    module = fidelity_inception_module
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "load_state_dict_from_url", lambda *a, **k: {})  # building it must not download...
        mp.setattr(
            module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None
        )  # ...nor need weights
        network = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(0)
    state = network.state_dict()
    for tensor in state.values():
        if tensor.ndim == 4:  # default init shrinks activations to ~1e-8 over 90+ layers; He-normal keeps them O(1)
            tensor.copy_(torch.randn(tensor.shape, generator=g) * (2.0 / tensor[0].numel()) ** 0.5)
    return state


@pytest.fixture(scope="module")
def fake_weights(fake_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / inception.WEIGHTS_FILE_NAME
    torch.save(fake_state, path)
    return path


def _digit_sets(digits, *sizes: int):
    idx = torch.randperm(len(digits), generator=torch.Generator().manual_seed(1))
    out, start = [], 0
    for n in sizes:
        out.append(digits.images[idx[start : start + n]])
        start += n
    return out


def test_fid_runs_end_to_end_and_equals_torch_fidelitys_formula(fake_weights, digits):
    a, b = _digit_sets(digits, 3, 3)
    fa = inception.inception_features(a, fake_weights)
    fb = inception.inception_features(b, fake_weights)
    assert fa.shape == (3, 2048) and fa.dtype == torch.float32 and bool(torch.isfinite(fa).all())
    assert float(fa.std(0).mean()) > 1e-4  # the fabricated network is not degenerate
    fid = inception.inception_fid(a, b, fake_weights)
    assert np.isfinite(fid) and fid > 0
    assert fid == pytest.approx(frechet_distance(fa, fb), rel=1e-6)
    # genlab's Fréchet distance is torch-fidelity's number (its formula: eigenvalues of the non-symmetric
    # Σ₁Σ₂); checked on 512 of the 2048 dimensions, as its general eigensolver takes ~20 s on 2048
    metric_fid = importlib.import_module("torch_fidelity.metric_fid")
    stats = [metric_fid.fid_features_to_statistics(f[:, :512]) for f in (fa, fb)]
    reference = metric_fid.fid_statistics_to_metric(*stats, verbose=False)[metric_fid.KEY_METRIC_FID]
    assert frechet_distance(fa[:, :512], fb[:, :512]) == pytest.approx(reference, rel=1e-5)


def test_fid_is_zero_for_the_same_set_symmetric_and_larger_for_a_shifted_set(fake_weights, digits):
    ref, other = _digit_sets(digits, 3, 3)
    same = inception.inception_fid(ref, ref, fake_weights)
    other_vs_ref = inception.inception_fid(other, ref, fake_weights)
    inverted_vs_ref = inception.inception_fid(255 - ref, ref, fake_weights)
    ref_vs_other = inception.inception_fid(ref, other, fake_weights)
    assert 0 <= same < 1e-3 * other_vs_ref
    assert ref_vs_other == pytest.approx(other_vs_ref, rel=1e-3)
    assert inverted_vs_ref > 2 * other_vs_ref


def test_grayscale_is_the_replicated_rgb_image_and_safetensors_loads_the_same(
    fake_state, fake_weights, digits, tmp_path
):
    from safetensors.torch import save_file

    (x,) = _digit_sets(digits, 2)
    features = inception.inception_features(x, fake_weights)
    torch.testing.assert_close(
        inception.inception_features(x.repeat(1, 3, 1, 1), fake_weights), features, rtol=0, atol=0
    )
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in fake_state.items()}, str(path))
    torch.testing.assert_close(inception.inception_features(x, path), features, rtol=0, atol=0)


def test_no_network_access_is_attempted(fake_weights, fidelity_inception_module, digits, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(fidelity_inception_module, "load_state_dict_from_url", no_network)
    a, b = _digit_sets(digits, 2, 2)
    assert np.isfinite(inception.inception_fid(a, b, fake_weights))


_unpickled = []


def _record_unpickling():
    _unpickled.append(True)
    return "ran"


class _PickledCode:
    def __reduce__(self):
        return (_record_unpickling, ())


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00garbage\xff" * 100, "unreadable, not a PyTorch or safetensors weights file"),
        ("pickled code", "holds Python objects besides tensors"),
        ({"weight": torch.zeros(3)}, "not Inception-v3 FID weights"),
        (torch.zeros(3), "not Inception-v3 FID weights (expected a state dict of tensors"),
        ("wrong shape", "size mismatch for fc.weight"),
    ],
)
def test_bad_weights_files_give_clear_errors(content, message, fake_state, tmp_path, digits):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "pickled code":
        torch.save({"fc.weight": _PickledCode()}, path)
    elif content == "wrong shape":
        torch.save(dict(fake_state, **{"fc.weight": torch.zeros(10, 2048)}), path)
    else:
        torch.save(content, path)
    (x,) = _digit_sets(digits, 2)
    with pytest.raises(GenlabError) as info:
        inception.inception_fid(x, x, path)
    assert message in str(info.value) and str(path) in str(info.value)
    if content == "wrong shape":
        assert "not Inception-v3 FID weights" in str(info.value)
    assert not _unpickled  # weights_only=True: the pickled function never ran


def test_missing_file_is_named_before_anything_else(tmp_path, digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # even without the library, the file is named first
    (x,) = _digit_sets(digits, 2)
    with pytest.raises(GenlabError, match="no such file") as info:
        inception.inception_fid(x, x, tmp_path / "nope.pth")
    assert inception.WEIGHTS_FILE_NAME in str(info.value)
    with pytest.raises(GenlabError, match="not a file"):
        inception.inception_fid(x, x, tmp_path)


def test_bad_images_are_refused(tmp_path, digits):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    x = digits.images[:3]
    with pytest.raises(GenlabError, match="samples_uint8: dtype float32"):
        inception.inception_fid(x.float(), x, path)
    with pytest.raises(GenlabError, match="reference_uint8: 1 image"):
        inception.inception_fid(x, x[:1], path)
    with pytest.raises(GenlabError, match="2 channels"):
        inception.inception_fid(x.repeat(1, 2, 1, 1), x, path)


def test_missing_library_says_how_to_install(tmp_path, digits, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity -> ModuleNotFoundError
    (x,) = _digit_sets(digits, 2)
    with pytest.raises(GenlabError, match=r"not installed: pip install 'genlab\[fid\]'"):
        inception.inception_fid(x, x, path)


class _FailingImport(importlib.abc.MetaPathFinder):
    def __init__(self, error: Exception):
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "torch_fidelity":
            raise self.error
        return None


@pytest.mark.parametrize(
    "error, message",
    [
        (
            RuntimeError("operator torchvision::nms does not exist"),
            "torchvision::nms does not exist); usually its torchvision was built for another torch",
        ),
        (ModuleNotFoundError("No module named 'torchvision'", name="torchvision"), "cannot import torchvision"),
    ],
)
def test_library_with_a_broken_torchvision_says_how_to_fix_it(error, message, tmp_path, digits, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    monkeypatch.delitem(sys.modules, "torch_fidelity", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport(error), *sys.meta_path])
    (x,) = _digit_sets(digits, 2)
    with pytest.raises(GenlabError) as info:
        inception.inception_fid(x, x, path)
    # pinning torch keeps pip from replacing it with the torch the newest torchvision wants
    assert message in str(info.value) and f"pip install torchvision torch=={torch.__version__.split('+')[0]}" in str(
        info.value
    )


@pytest.fixture
def tiny_npz(digits, tmp_path):
    """60 unlabelled digits: the evaluator is PCA (no training)."""
    path = tmp_path / "tiny.npz"
    np.savez(path, x=digits.images[:60].numpy())
    return f"npz:{path}"


@pytest.fixture
def cheap_fid(monkeypatch):
    """The CLI plumbing only: a cheap stand-in for inception_fid (the real one is tested above)."""
    calls = []

    def mean_pixel_gap(samples, reference, weights_path, **kwargs):
        assert samples.dtype == reference.dtype == torch.uint8 and samples.ndim == reference.ndim == 4
        calls.append((len(samples), len(reference), str(weights_path)))
        return float(abs(samples.float().mean() - reference.float().mean()))

    monkeypatch.setattr(inception, "inception_fid", mean_pixel_gap)
    return calls


def test_evaluate_cli_adds_fid_inception(fake_weights, cheap_fid, tiny_npz, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "gaussian", "--data", tiny_npz, "--out", str(run), "-q"]) == 0
    assert main(["evaluate", str(run), "-n", "21", "--inception-weights", str(fake_weights), "-q"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("fid_inception"))
    assert len(line.split()) == 3  # model and real-data columns
    assert cheap_fid == [(21, 12, str(fake_weights))] * 2  # samples, then real training images, vs the 12 held out
    evaluation = json.loads((run / "metrics.json").read_text())["evaluation"]
    assert evaluation["metrics"]["fid_inception"] > 0 and np.isfinite(evaluation["real_data"]["fid_inception"])


def test_cli_errors_are_one_line(tiny_npz, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["fit", "gaussian", "--data", tiny_npz, "--out", str(run), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "-n", "10", "--inception-weights", str(tmp_path / "none.pth")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and err.count("\n") == 1
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    for args in (
        ["evaluate", str(run)],
        ["compare", "--models", "gaussian", "--data", tiny_npz, "--folds", "2", "--out", str(tmp_path / "cmp")],
    ):
        assert main([*args, "-n", "10", "--inception-weights", str(weights), "-q"]) == 2
        err = capsys.readouterr().err
        assert "genlab[fid]" in err and err.count("\n") == 1
    assert not (tmp_path / "cmp").exists()  # failed before any work


def test_compare_cli_adds_fid_inception_and_recomputes_cells_without_it(
    fake_weights, cheap_fid, tiny_npz, tmp_path, capsys
):
    calls = cheap_fid
    out = tmp_path / "cmp"
    args = ["compare", "--models", "gaussian", "--data", tiny_npz, "--folds", "2", "--out", str(out), "-n", "21", "-q"]
    assert main(args) == 0
    assert "FID Inception" not in (out / "results.md").read_text() and not calls
    capsys.readouterr()
    assert main([*args, "--inception-weights", str(fake_weights)]) == 0
    assert "done before, skipped" not in capsys.readouterr().out  # cells without fid_inception are redone
    assert calls == [(21, 30, str(fake_weights))] * (2 * (3 + 1))  # per fold: 3 real-data seeds + 1 model
    table = (out / "results.md").read_text()
    assert "FID Inception ↓" in table and "FID Inception " in table.split("Real-vs-real spread")[1]
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["rows"]["gaussian"]["metrics"]["fid_inception"][0] >= 0
        and "fid_inception" in summary["rows"]["real data"]["metrics"]
    )
    assert main([*args, "--inception-weights", str(fake_weights)]) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 2 and len(calls) == 8
