"""Mode-collapse monitoring.

A collapsing generator puts its samples on a few modes. Given an assignment of samples to
modes (the evaluator's predicted classes for images, or the nearest known centre for
toy data), the normalised entropy of the mode histogram is 1 when every mode is equally
frequent and falls towards 0 as the generator collapses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ..metrics.classes import class_entropy

#: normalised entropy below which :func:`collapse_report` flags collapse
DEFAULT_ENTROPY_THRESHOLD = 0.8


@dataclass(frozen=True)
class CollapseReport:
    """Mode histogram of a batch of samples and what it says."""

    counts: np.ndarray  # (K,) samples per mode (samples assigned to no mode are not counted)
    normalized_entropy: float  # in [0, 1]
    modes_covered: int  # modes with at least ``min_share`` of the samples
    high_quality: float  # share of the samples assigned to some mode
    collapsed: bool


def nearest_mode(samples: Any, centres: Any, max_distance: float) -> np.ndarray:
    """Index of the nearest centre for each sample (N, D) among centres (K, D), or -1 when
    it is farther than ``max_distance`` from all of them: int64 (N,)."""
    x = torch.as_tensor(np.asarray(samples), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise GenlabError(f"samples {tuple(x.shape)} and centres {tuple(c.shape)} must be (N, D) and (K, D)")
    d = torch.cdist(x, c)
    dist, idx = d.min(dim=1)
    idx[dist > max_distance] = -1
    return idx.numpy()


def collapse_report(
    assignments: Any, n_modes: int, *, min_share: float = 0.2, threshold: float = DEFAULT_ENTROPY_THRESHOLD
) -> CollapseReport:
    """Summarise mode assignments (N,) in {-1, 0..n_modes-1} (-1 = no mode).

    A mode counts as covered when it holds at least ``min_share / n_modes`` of the
    assigned samples (a fifth of its fair share by default); ``collapsed`` is True when
    the normalised entropy of the histogram is below ``threshold`` or fewer than all
    modes are covered.
    """
    a = np.asarray(assignments, dtype=np.int64)
    if n_modes < 2:
        raise GenlabError("n_modes must be >= 2 to speak of collapse")
    counts = np.bincount(a[a >= 0], minlength=n_modes)[:n_modes]
    assigned = int(counts.sum())
    if assigned == 0:
        return CollapseReport(counts, 0.0, 0, 0.0, True)
    entropy = class_entropy(counts, normalized=True)
    covered = int((counts >= min_share * assigned / n_modes).sum())
    return CollapseReport(counts, entropy, covered, assigned / len(a), entropy < threshold or covered < n_modes)
