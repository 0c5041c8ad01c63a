"""Atomic file writes and the safetensors + JSON checkpoint format (never pickle).

Every file genlab writes goes to a temporary file in the same directory first and is
then renamed over the target, so an interrupted process never leaves half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from .errors import GenlabError


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


#: top-level key listing the values written as null because JSON cannot hold them
NON_FINITE_KEY = "non_finite_values"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (RFC 8259: no bare NaN/Infinity), atomically.

    Non-finite numbers become ``null``; when ``obj`` is a dict, its key ``"non_finite_values"``
    then maps the dotted path of each to the value it stood for and why it is null, e.g.
    ``{"score.mean": "nan: not representable in JSON"}``. Other containers with non-finite
    numbers are refused.
    """
    notes: dict[str, str] = {}
    clean = strict_json_value(obj, "", notes)
    if notes:
        if not isinstance(clean, dict):
            raise GenlabError(
                f"{path}: cannot write {', '.join(notes.values())} at {', '.join(notes) or 'the top level'} as JSON"
            )
        clean[NON_FINITE_KEY] = {**clean.get(NON_FINITE_KEY, {}), **notes}
    return atomic_write_text(path, json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n")


def strict_json_value(obj: Any, where: str = "", notes: dict[str, str] | None = None) -> Any:
    """``obj`` with only JSON types (NumPy/torch scalars and arrays as numbers and lists, paths
    as strings) and every non-finite float replaced by None, recorded in ``notes`` by path."""
    if isinstance(obj, float) or (hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0):
        value = obj.item() if not isinstance(obj, float) else obj
        if isinstance(value, float) and not math.isfinite(value):
            if notes is not None:
                notes[where or "."] = f"{value}: not representable in JSON"
            return None
        return value
    if isinstance(obj, dict):
        return {
            str(k) if not isinstance(k, (str, int, float, bool)) and k is not None else k: strict_json_value(
                v, f"{where}.{k}" if where else str(k), notes
            )
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [strict_json_value(v, f"{where}.{i}" if where else str(i), notes) for i, v in enumerate(obj)]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # arrays and tensors
        return strict_json_value(obj.tolist(), where, notes)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenlabError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise GenlabError(f"{path}: nested too deeply to be a genlab file") from None


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors to a safetensors file atomically (contiguous CPU copies)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata))


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: file not found")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise GenlabError(f"{path}: not a readable safetensors file ({exc})") from None
