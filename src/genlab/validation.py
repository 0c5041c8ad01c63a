"""Input and hyper-parameter checks shared by every model, with errors that name the
argument and what was expected (scikit-learn style)."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np
import torch

from .errors import GenlabError


def check_images(X: Any, *, name: str = "X", expected_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Validate images and return a uint8 tensor (N, C, H, W) on the CPU.

    Accepts a genlab ``Dataset``, a NumPy array or a torch tensor of shape (N, H, W) or
    (N, C, H, W) holding uint8 pixels (or integers in 0..255).
    """
    from .data.dataset import Dataset

    if isinstance(X, Dataset):
        X = X.images
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if isinstance(X, np.ndarray):
        if X.dtype == object or not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating) or X.dtype == bool):
            raise GenlabError(f"{name}: dtype {X.dtype} is not an image dtype; pass uint8 pixels (N, C, H, W)")
        X = torch.from_numpy(np.ascontiguousarray(X))
    if not isinstance(X, torch.Tensor):
        raise GenlabError(f"{name}: expected images as a uint8 array/tensor (N, C, H, W), got {type(X).__name__}")
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4:
        raise GenlabError(f"{name}: shape {tuple(X.shape)} is not (N, H, W) or (N, C, H, W) images")
    if X.shape[0] == 0:
        raise GenlabError(f"{name}: no images (N = 0)")
    if X.dtype != torch.uint8:
        if X.dtype.is_floating_point or X.dtype == torch.bool or X.dtype.is_complex:
            raise GenlabError(
                f"{name}: dtype {str(X.dtype).replace('torch.', '')} — genlab models take uint8 pixels 0..255; "
                "convert floats in [0, 1] with (x * 255).round().astype('uint8')"
            )
        lo, hi = int(X.min()), int(X.max())
        if lo < 0 or hi > 255:
            raise GenlabError(f"{name}: integer pixels must lie in 0..255, found range [{lo}, {hi}]")
        X = X.to(torch.uint8)
    X = X.cpu()
    if expected_shape is not None and tuple(X.shape[1:]) != tuple(expected_shape):
        raise GenlabError(f"{name}: images of shape {tuple(X.shape[1:])}, but the model was fitted on {tuple(expected_shape)}")
    return X.contiguous()


def as_integer_array(y: Any, name: str) -> np.ndarray:
    """``y`` as an int64 NumPy array; floats equal to whole numbers are accepted, anything else raises."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            return y.astype(np.int64)
        raise GenlabError(f"{name}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)


def check_labels(y: Any, n: int, *, name: str = "y", n_classes: int | None = None) -> torch.Tensor:
    """Integer labels (n,) as int64; with ``n_classes`` checks the range 0..n_classes-1."""
    y = as_integer_array(y, name)
    if y.ndim == 0:
        y = np.full(n, y)
    if y.shape != (n,):
        raise GenlabError(f"{name}: shape {y.shape}, expected ({n},) — one label per image")
    if y.min() < 0:
        raise GenlabError(f"{name}: negative label {int(y.min())}")
    if n_classes is not None and y.max() >= n_classes:
        raise GenlabError(f"{name}: label {int(y.max())} is unknown; the model knows labels 0..{n_classes - 1}")
    return torch.from_numpy(y)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = list(choices)
    if value not in choices:
        raise GenlabError(f"{name}={value!r} is not valid; use one of {', '.join(repr(c) for c in choices)}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise GenlabError(f"{name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise GenlabError(f"{name}={value} must be >= {minimum}")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float | None = None, exclusive: bool = False, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise GenlabError(f"{name}={value!r} must be a finite number")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise GenlabError(f"{name}={value} must be {'>' if exclusive else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{name}={value} must be <= {maximum}")
    return float(value)


def check_n_samples(n: Any) -> int:
    return check_int("n", n, minimum=1)
