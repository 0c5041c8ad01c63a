"""Kernel distance (KID) and bootstrap confidence intervals of the feature-space metrics.

KID (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs") is the squared
maximum mean discrepancy between real features X (N, F) and fake features Y (M, F) under
the cubic polynomial kernel ``k(a, b) = (aᵀb / F + 1)³``, estimated without bias:

    MMD²_u = 1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j) − 2/(NM) Σ_{i,j} k(x_i, y_j).

Unlike the Fréchet distance it has no small-sample bias (its expectation is the true MMD²,
which is 0 for equal distributions, so it can come out slightly negative), and it makes no
Gaussian assumption. As in Bińkowski et al. (and torch-fidelity) it is averaged over random
subsets of both sets; ``kid_std`` is the spread of the subset estimates.

:func:`bootstrap_intervals` gives percentile intervals (bootstrap over the samples) for FD,
KID, precision, recall, density and coverage:

* FD and KID: both sets are resampled with replacement and the statistic recomputed
  (KID with the unbiased formula applied to the resampled multiset through counts, from
  the kernel matrices computed once).
* precision/density (one indicator or count per fake) and recall/coverage (one indicator
  per real): the per-point indicators are computed once and resampled — the interval of
  the mean over the points, given the other set's k-NN balls. Recomputing the k-NN radii
  on a resampled set would be biased: a duplicated point is its own nearest neighbour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ._neighbours import as_features, check_same_width
from .frechet import frechet_distance_from_statistics

#: bootstrap replicates and interval level used by the evaluation
N_BOOTSTRAP = 200
LEVEL = 0.95


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a bᵀ / F + 1)³`` for rows of a (N, F) and b (M, F), in float64: (N, M)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_from_counts(
    kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor
) -> torch.Tensor:
    """Unbiased MMD² of multisets given by counts wx (B, N), wy (B, M) over the rows: (B,).

    Σ_{a≠b} k(x_{i_a}, x_{i_b}) over a multiset with counts w is ``wᵀKw − w·diag(K)``.
    """
    n, m = wx.sum(1), wy.sum(1)
    sxx = ((wx @ kxx) * wx).sum(1) - wx @ torch.diagonal(kxx)
    syy = ((wy @ kyy) * wy).sum(1) - wy @ torch.diagonal(kyy)
    sxy = ((wx @ kxy) * wy).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd2_unbiased(real: Any, fake: Any) -> float:
    """Unbiased squared MMD between ``real`` (N, F) and ``fake`` (M, F) with the cubic kernel; N, M >= 2."""
    x = as_features(real, "real", min_rows=2, why="the unbiased estimate needs two rows")
    y = as_features(fake, "fake", min_rows=2, why="the unbiased estimate needs two rows", device=x.device)
    check_same_width(x, y, "real", "fake")
    ones_x = torch.ones((1, len(x)), dtype=torch.float64, device=x.device)
    ones_y = torch.ones((1, len(y)), dtype=torch.float64, device=x.device)
    return float(
        _mmd2_from_counts(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y), ones_x, ones_y)[0]
    )


def kernel_distance(
    real: Any, fake: Any, *, n_subsets: int = 50, subset_size: int | None = None, seed: int = 0
) -> dict[str, float]:
    """KID of ``fake`` (M, F) against ``real`` (N, F): ``{"kid", "kid_std"}``.

    The mean and standard deviation of :func:`mmd2_unbiased` over ``n_subsets`` random
    subsets (drawn without replacement, ``subset_size`` rows from each set; default
    ``min(1000, N // 2, M // 2)``, so the subsets differ). Units: squared feature units / F
    scaled by the kernel (not comparable across feature spaces).
    """
    x = as_features(real, "real", min_rows=4, why="KID subsets need two rows each")
    y = as_features(fake, "fake", min_rows=4, why="KID subsets need two rows each", device=x.device)
    check_same_width(x, y, "real", "fake")
    size = min(1000, len(x) // 2, len(y) // 2) if subset_size is None else int(subset_size)
    if not 2 <= size <= min(len(x), len(y)):
        raise GenlabError(
            f"subset_size={subset_size}: must be between 2 and the smaller set's size {min(len(x), len(y))}"
        )
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(int(n_subsets)):  # a handful of subset estimates, each vectorised
        ix = torch.randperm(len(x), generator=g)[:size].to(x.device)
        iy = torch.randperm(len(y), generator=g)[:size].to(x.device)
        values.append(mmd2_unbiased(x[ix], y[iy]))
    arr = np.asarray(values)
    return {"kid": float(arr.mean()), "kid_std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def _percentile_interval(values: torch.Tensor | np.ndarray, level: float, point: float) -> tuple[float, float]:
    """Percentile interval of the replicates, shifted by their median's offset from ``point``.

    Resampling with replacement duplicates points, which biases FD upwards (fewer distinct
    points); the shift centres the interval on the estimate the user sees.
    """
    arr = np.asarray(values, dtype=np.float64)
    tail = 100 * (1 - level) / 2
    bias = float(np.median(arr)) - float(point)
    return float(np.percentile(arr, tail)) - bias, float(np.percentile(arr, 100 - tail)) - bias


def _resample_counts(n: int, n_boot: int, g: torch.Generator) -> torch.Tensor:
    """(n_boot, n) float64 counts of a with-replacement resample of n items."""
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    return torch.zeros((n_boot, n), dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))


def _weighted_statistics(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of the multiset of rows of x (N, F) with counts w (N,)."""
    n = w.sum()
    mean = (w @ x) / n
    centred = x - mean
    return mean, (centred.T * w) @ centred / (n - 1)


def bootstrap_intervals(
    real: Any,
    fake: Any,
    indicators: dict[str, np.ndarray],
    *,
    k: int,
    point: dict[str, float] | None = None,
    n_boot: int = N_BOOTSTRAP,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals ``{metric: (low, high)}`` at ``level`` for fd, kid and the k-NN metrics.

    ``indicators`` are the per-point arrays that :func:`genlab.metrics.prdc.prdc` fills in
    for the same sets (``fake_count`` (M,), ``real_in_fake`` (N,), ``real_covered`` (N,)).
    ``point``: the estimates on the full sets (default: computed here; ``kid`` is then the
    full-set unbiased MMD²); each interval is the replicates' percentile interval shifted
    so that their median falls on the estimate.
    """
    x = as_features(real, "real", min_rows=2).to(torch.float64).cpu()
    y = as_features(fake, "fake", min_rows=2).to(torch.float64).cpu()
    g = torch.Generator().manual_seed(seed)
    wx, wy = _resample_counts(len(x), n_boot, g), _resample_counts(len(y), n_boot, g)
    fds = []
    for b in range(n_boot):  # one eigendecomposition pair per replicate
        mx, cx = _weighted_statistics(x, wx[b])
        my, cy = _weighted_statistics(y, wy[b])
        fds.append(frechet_distance_from_statistics(mx, cx, my, cy))
    kids = _mmd2_from_counts(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y), wx, wy)
    fake_count = torch.as_tensor(np.asarray(indicators["fake_count"]), dtype=torch.float64)
    real_in_fake = torch.as_tensor(np.asarray(indicators["real_in_fake"]), dtype=torch.float64)
    real_covered = torch.as_tensor(np.asarray(indicators["real_covered"]), dtype=torch.float64)
    m, n = len(fake_count), len(real_in_fake)
    fw = _resample_counts(m, n_boot, g)
    rw = _resample_counts(n, n_boot, g)
    replicates = {
        "fd": np.asarray(fds),
        "kid": kids.numpy(),
        "precision": (fw @ (fake_count > 0).double() / m).numpy(),
        "density": (fw @ fake_count / (k * m)).numpy(),
        "recall": (rw @ real_in_fake / n).numpy(),
        "coverage": (rw @ real_covered / n).numpy(),
    }
    point = dict(point or {})
    if "fd" not in point:
        mx, cx = _weighted_statistics(x, torch.ones(len(x), dtype=torch.float64))
        my, cy = _weighted_statistics(y, torch.ones(len(y), dtype=torch.float64))
        point["fd"] = frechet_distance_from_statistics(mx, cx, my, cy)
    point.setdefault("kid", mmd2_unbiased(x, y))
    point.setdefault("precision", float((fake_count > 0).double().mean()))
    point.setdefault("density", float(fake_count.sum() / (k * m)))
    point.setdefault("recall", float(real_in_fake.mean()))
    point.setdefault("coverage", float(real_covered.mean()))
    return {name: _percentile_interval(values, level, point[name]) for name, values in replicates.items()}
