"""Device selection and seeding."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch

from .errors import GenlabError

_KNOWN = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is checked to exist."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    name = str(device)
    kind = name.split(":")[0]
    if kind not in _KNOWN:
        raise GenlabError(f"device={name!r} is not known; use one of {', '.join(_KNOWN)} (e.g. 'cuda:1')")
    if kind == "cuda" and not torch.cuda.is_available():
        raise GenlabError(f"device={name!r} was requested but this torch has no CUDA device")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise GenlabError(f"device={name!r} was requested but MPS is not available")
    return torch.device(name)


def _matmul_backends() -> list:
    """torch's per-backend float32 matmul settings (``fp32_precision``, torch >= 2.9)."""
    found = []
    for backend in (getattr(torch.backends, "cuda", None), getattr(torch.backends, "mkldnn", None)):
        matmul = getattr(backend, "matmul", None)
        if matmul is not None and hasattr(matmul, "fp32_precision"):
            found.append(matmul)
    return found


@contextlib.contextmanager
def full_precision_matmul() -> Iterator[None]:
    """Float32 matrix products in IEEE float32 inside the block, on every backend.

    A user (or a library) may allow TF32 on CUDA or bfloat16 on CPU
    (``torch.set_float32_matmul_precision("high")``, ``torch.backends.cuda.matmul.allow_tf32``
    or the per-backend ``fp32_precision``): fast, but inputs are rounded to 10 or 7 mantissa
    bits, which breaks every result promised exact to float32 rounding (KDE and Gaussian
    mixture log-densities). The block runs with ``"highest"`` precision on every backend and
    restores the caller's settings after, whichever API set them (the legacy and per-backend
    APIs must not be left mixed: torch refuses to read a mixed state).
    """
    backends = _matmul_backends()
    saved_backends = [m.fp32_precision for m in backends]
    try:
        saved_legacy: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:  # set through the per-backend API only: restored through it below
        saved_legacy = None
    torch.set_float32_matmul_precision("highest")  # also sets every backend's fp32_precision to "ieee"
    for m in backends:
        m.fp32_precision = "ieee"
    try:
        yield
    finally:
        if saved_legacy is not None:
            torch.set_float32_matmul_precision(saved_legacy)
        for m, value in zip(backends, saved_backends):
            m.fp32_precision = value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator: seeded when ``seed`` is given, else from fresh entropy."""
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def physical_memory_bytes() -> int:
    """This machine's physical memory in bytes (8 GiB where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        return 16 << 30


def training_memory_bytes(device: torch.device) -> int:
    """Memory a network's training state may take on ``device``: the GPU's total memory on
    CUDA, else half of this machine's physical memory (``GENLAB_MAX_TRAINING_BYTES`` overrides)."""
    override = os.environ.get("GENLAB_MAX_TRAINING_BYTES")
    if override:
        try:
            return int(float(override))
        except ValueError:
            raise GenlabError(f"GENLAB_MAX_TRAINING_BYTES={override!r} must be a number of bytes") from None
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return physical_memory_bytes() // 2
