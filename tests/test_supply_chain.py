"""Supply-chain hardening: dependency floors that load weights safely, and the text encoder's
weights hash checked before anything is deserialised from its folder."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from genlab.errors import GenlabError
from genlab.text import encoder as encoder_module
from genlab.text.encoder import TextEncoder, weights_sha256

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _floor(requirements: list[str], name: str) -> tuple[int, ...]:
    for req in requirements:
        m = re.match(rf"{re.escape(name)}\s*>=\s*([0-9.]+)", req)
        if m:
            return tuple(int(p) for p in m.group(1).split("."))
    raise AssertionError(f"{name} has no >= floor in {requirements}")


def test_dependency_floors_are_versions_that_load_weights_safely():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _floor(project["dependencies"], "torch") >= (2, 6)  # torch.load defaults to weights_only=True
    assert _floor(project["optional-dependencies"]["text"], "sentence-transformers") >= (
        6,
        0,
    )  # no foreign module classes


class _Payload:
    """A pickled object that is not a tensor: what a hostile .bin would hold."""


def test_installed_torch_load_refuses_pickled_objects_by_default(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only"):
        torch.load(path)  # no weights_only argument: the default must be the safe one


class _MustNotLoad:
    constructed = 0

    def __init__(self, *args, **kwargs):
        type(self).constructed += 1
        raise AssertionError("the folder was loaded before its hash was checked")


@pytest.fixture
def fake_folder(tmp_path):
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "evil.module.Class"}]')
    (folder / "model.safetensors").write_bytes(b"not the weights the model was trained with")
    return folder


def test_recorded_encoder_hash_is_checked_before_the_folder_is_loaded(monkeypatch, fake_folder):
    _MustNotLoad.constructed = 0
    monkeypatch.setattr(encoder_module, "_import_sentence_transformers", lambda: _MustNotLoad)
    with pytest.raises(
        GenlabError,
        match=r"trained with text encoder all-MiniLM-L6-v2@sha256:0123456789abcdef, but encoder@sha256:[0-9a-f]{16} is the encoder found at ",
    ):
        TextEncoder(str(fake_folder), device="cpu", expected_id="all-MiniLM-L6-v2@sha256:0123456789abcdef")
    assert _MustNotLoad.constructed == 0


def test_matching_hash_goes_on_to_load(monkeypatch, fake_folder):
    _MustNotLoad.constructed = 0
    monkeypatch.setattr(encoder_module, "_import_sentence_transformers", lambda: _MustNotLoad)
    digest = weights_sha256(fake_folder / "model.safetensors")
    with pytest.raises(GenlabError, match="could not load it as a sentence-transformers model"):
        TextEncoder(str(fake_folder), device="cpu", expected_id=f"anything@sha256:{digest[:16]}")
    assert _MustNotLoad.constructed == 1
