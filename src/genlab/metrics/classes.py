"""Class balance and label faithfulness of generated samples, from predicted labels.

Feed these the labels an evaluator classifier predicts for generated images:

* ``class_histogram`` — how many samples fell into each class;
* ``class_entropy`` — Shannon entropy of that histogram in nats; a generator that
  drops classes (mode collapse) has low entropy, one that hits all classes equally has
  ln(n_classes) (1.0 with ``normalized=True``);
* ``conditional_accuracy`` — for class-conditional generation, the share of samples the
  classifier assigns to the class that was requested.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ..models.validation import as_integer_array, check_int


def _as_labels(labels: Any, name: str) -> np.ndarray:
    """1-D non-negative integer labels as int64 (floats equal to integers are accepted)."""
    y = as_integer_array(labels, name)
    if y.ndim != 1:
        raise GenlabError(f"{name}: shape {y.shape}, expected (N,) — one label per sample")
    if y.size == 0:
        raise GenlabError(f"{name}: no labels")
    if y.min() < 0:
        raise GenlabError(f"{name}: negative label {int(y.min())}")
    return y.astype(np.int64)


def class_histogram(predicted_labels: Any, n_classes: int) -> np.ndarray:
    """Counts per class.

    Parameters
    ----------
    predicted_labels : (N,) integers in 0..n_classes-1.
    n_classes : number of classes (classes never predicted get count 0).

    Returns
    -------
    (n_classes,) int64 ndarray of counts, summing to N.
    """
    n_classes = check_int("n_classes", n_classes, minimum=1)
    y = _as_labels(predicted_labels, "predicted_labels")
    if y.max() >= n_classes:
        raise GenlabError(f"predicted_labels: label {int(y.max())} is out of range for n_classes={n_classes}")
    return np.bincount(y, minlength=n_classes).astype(np.int64)


def class_entropy(counts: Any, normalized: bool = False) -> float:
    """Shannon entropy ``H = −Σ p_c ln p_c`` of a class histogram, in nats.

    Parameters
    ----------
    counts : (C,) non-negative counts (or frequencies); empty classes contribute 0.
    normalized : divide by ln C, so that 1.0 means all C classes equally frequent and
        0.0 means a single class (needs C >= 2).

    Returns
    -------
    float, in [0, ln C] nats (or [0, 1] when normalized).
    """
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise GenlabError(f"counts: shape {c.shape}, expected (n_classes,)")
    if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
        raise GenlabError(f"counts: dtype {c.dtype} is not numeric")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise GenlabError("counts: must be finite and non-negative")
    total = c.sum()
    if total <= 0:
        raise GenlabError("counts: all zero — no samples to take the entropy of")
    p = c[c > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    entropy = max(entropy, 0.0)  # a single class gives -0.0
    if normalized:
        if c.size < 2:
            raise GenlabError("normalized entropy needs at least 2 classes (ln 1 = 0)")
        return entropy / math.log(c.size)
    return entropy


def conditional_accuracy(predicted: Any, requested: Any) -> float:
    """Share of samples whose predicted class equals the requested class.

    Parameters
    ----------
    predicted : (N,) labels the classifier assigned to the generated samples.
    requested : (N,) labels the samples were generated for.

    Returns
    -------
    float in [0, 1].
    """
    p = _as_labels(predicted, "predicted")
    r = _as_labels(requested, "requested")
    if p.shape != r.shape:
        raise GenlabError(f"requested: {r.shape[0]} labels, but predicted has {p.shape[0]}")
    return float(np.mean(p == r))
