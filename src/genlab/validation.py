"""Input and hyper-parameter checks shared by every model, with errors that name the
argument and what was expected (scikit-learn style)."""

from __future__ import annotations

import numbers
import re
from typing import Any, Iterable, Sequence

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
        if X.dtype == object or not (
            np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating) or X.dtype == bool
        ):
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
        raise GenlabError(
            f"{name}: images of shape {tuple(X.shape[1:])}, but the model was fitted on {tuple(expected_shape)}"
        )
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


def class_values(class_names: Sequence[str]) -> list[int] | list[str]:
    """The label values a dataset's class names stand for: integers when every name is one
    (an npz's labels {0, 10**15} have names "0", "1000000000000000"), else the names."""
    names = [str(c) for c in class_names]
    if names and all(re.fullmatch(r"-?[0-9]+", c) for c in names):
        return [int(c) for c in names]
    return names


def encode_labels(
    y: Any, n: int, *, name: str = "y", class_names: Sequence[str] | None = None
) -> tuple[torch.Tensor, list[int] | list[str]]:
    """Labels for ``fit``: (class indices 0..K-1 as int64 (n,), the K label values they stand for).

    ``y`` holds the user's label values, any integers (e.g. {0, 10**15}); they are re-indexed in
    sorted order and the values are returned so the model can keep them (``classes_``). With
    ``class_names`` (a Dataset's), ``y`` already holds indices into them and the classes are the
    names (as integers when every name is one).
    """
    values = as_integer_array(y, name)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,):
        raise GenlabError(f"{name}: shape {values.shape}, expected ({n},) — one label per image")
    if class_names is not None:
        classes = class_values(class_names)
        if values.min() < 0 or values.max() >= len(classes):
            raise GenlabError(
                f"{name}: label index {int(values.max() if values.max() >= len(classes) else values.min())} has no class name ({len(classes)} classes)"
            )
        return torch.from_numpy(values), classes
    uniques, codes = np.unique(values, return_inverse=True)
    return torch.from_numpy(codes.astype(np.int64).reshape(n)), [int(v) for v in uniques]


def _shown(classes: Sequence[Any], limit: int = 10) -> str:
    text = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in list(classes)[:limit])
    return text + (f", ... ({len(classes)} in all)" if len(classes) > limit else "")


def _map_to_classes(y: Any, n: int, name: str, classes: Sequence[Any]) -> torch.Tensor:
    """The user's label values (or class names) -> class indices, (n,) int64."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 0:
        arr = np.full(n, arr.item() if arr.dtype.kind not in "US" else str(arr))
    if arr.shape != (n,):
        raise GenlabError(f"{name}: shape {arr.shape}, expected ({n},) — one label per image")
    k = len(classes)
    if arr.dtype.kind in "US":  # class names
        index = {str(c): i for i, c in enumerate(classes)}
        unknown = [s for s in dict.fromkeys(arr.tolist()) if s not in index]
        if unknown:
            raise GenlabError(f"{name}: label {unknown[0]!r} is unknown; the model knows {_shown(classes)}")
        return torch.tensor([index[s] for s in arr.tolist()], dtype=torch.int64)
    values = as_integer_array(arr, name)
    if all(isinstance(c, str) for c in classes):  # named classes: integers are class indices
        bad = values[(values < 0) | (values >= k)]
        if bad.size:
            raise GenlabError(
                f"{name}: label {int(bad[0])} is unknown; the model knows the classes {_shown(classes)} (or their indices 0..{k - 1})"
            )
        return torch.from_numpy(values)
    known = np.asarray(classes, dtype=np.int64)
    order = np.argsort(known, kind="stable")
    pos = np.clip(np.searchsorted(known[order], values), 0, k - 1)
    found = known[order][pos] == values
    if not found.all():
        raise GenlabError(
            f"{name}: label {int(values[~found][0])} is unknown; the model knows labels {_shown(classes)}"
        )
    return torch.from_numpy(order[pos].astype(np.int64))


def check_labels(
    y: Any, n: int, *, name: str = "y", n_classes: int | None = None, classes: Sequence[Any] | None = None
) -> torch.Tensor:
    """Labels (n,) as int64 class indices.

    With ``classes`` (a fitted model's ``classes_``: the label values or class names it was
    fitted on) the user's values/names are mapped to indices, unknown ones raise; otherwise
    integers are checked to lie in 0..n_classes-1.
    """
    if classes is not None and list(classes) != list(range(len(classes))):
        return _map_to_classes(y, n, name, classes)
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


def check_float(
    name: str, value: Any, *, minimum: float | None = None, exclusive: bool = False, maximum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise GenlabError(f"{name}={value!r} must be a finite number")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise GenlabError(f"{name}={value} must be {'>' if exclusive else '>='} {minimum}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{name}={value} must be <= {maximum}")
    return float(value)


def check_n_samples(n: Any) -> int:
    return check_int("n", n, minimum=1)


def check_latents(
    Z: Any, dim: int, *, dtype: torch.dtype = torch.float32, name: str = "Z", what: str = "latents"
) -> torch.Tensor:
    """Latent codes (N, dim) as a finite CPU tensor of ``dtype``; one code (dim,) becomes (1, dim).
    ``what`` names them in errors ("latents", "codes")."""
    z = torch.as_tensor(np.asarray(Z.detach().cpu() if isinstance(Z, torch.Tensor) else Z), dtype=dtype)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != dim or z.shape[0] < 1:
        raise GenlabError(f"{name}: expected {what} of shape (N, {dim}), got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise GenlabError(f"{name}: {what} contain NaN or inf")
    return z
