"""Device selection and seeding."""

from __future__ import annotations

import os
import random

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
