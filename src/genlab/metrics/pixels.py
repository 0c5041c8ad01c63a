"""Pixel-value statistics of uint8 images: does a model's grey-level histogram match the data's?

Feature-space metrics (FD, precision/recall) are nearly blind to a faint haze over the
background — a classifier ignores values of 1-7 out of 255 — but a user who shows the
images with contrast, or any tool that thresholds them, sees it at once. These numbers
look at the pixel values themselves:

* ``pixel_tv``: total-variation distance ``1/2 Σ_v |p(v) − q(v)|`` between the normalised
  256-bin histograms of all pixel values of the samples (p) and of the real images (q);
  0 for identical histograms, 1 for disjoint ones.
* ``zero_share``: share of pixels that are exactly 0 (the background of digit images).
* ``faint_share``: share of pixels with values 1..7 (:data:`FAINT`): the haze.

Compare each with the same numbers for a real subset against the held-out images (the
real-vs-real row of ``genlab evaluate`` and ``genlab compare``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError

#: the pixel values counted as faint (inclusive bounds)
FAINT = (1, 7)


def pixel_histogram(images: torch.Tensor) -> np.ndarray:
    """Normalised histogram of the pixel values of uint8 images (any shape): float64 (256,), sums to 1."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise GenlabError("pixel statistics need uint8 images (a torch.uint8 tensor)")
    if images.numel() == 0:
        raise GenlabError("pixel statistics need at least one pixel")
    counts = torch.bincount(images.reshape(-1).to(torch.int64), minlength=256).to(torch.float64)
    return (counts / counts.sum()).numpy()


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Total-variation distance ``1/2 Σ |p − q|`` of two probability vectors, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def pixel_metrics(samples: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """``{"pixel_tv", "zero_share", "faint_share"}`` of ``samples`` against ``real`` (both uint8)."""
    p, q = pixel_histogram(samples), pixel_histogram(real)
    lo, hi = FAINT
    return {"pixel_tv": total_variation(p, q), "zero_share": float(p[0]), "faint_share": float(p[lo : hi + 1].sum())}
