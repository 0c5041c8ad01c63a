"""Gaussian kernel density estimation, exact, in torch.

``log p(x) = log( (1/n) Σᵢ N(x; xᵢ, h² I) )`` evaluated exactly over *all* training
points (no tree, no approximation): squared distances come from one float32 GEMM on
centred data, the 16 nearest of each query — the terms that dominate the sum — are
recomputed and summed in float64, the rest in float32. The result matches a
float64 NumPy/SciPy reference to well under 1e-6 relative (see ``tests/test_kde.py``).

scikit-learn's ``KernelDensity`` uses a KD/ball tree whose pruning is unreliable in
64-784 dimensions (scikit-learn issues #27186, #25799): its scores can be off by
hundreds of nats per image even with ``atol = rtol = 0``. In 2-D both agree.

Bandwidth: a number (pixels scaled to [0, 1]), ``"scott"``, ``"silverman"`` (both
scaled by the data's RMS standard deviation, unlike scikit-learn's unscaled rules), or
``"cv"``: k-fold cross-validation of the held-out log-likelihood over a bandwidth grid,
reusing each fold's distance matrix for every bandwidth.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import KFold

from ..device import full_precision_matmul
from ..errors import GenlabError
from ..likelihood import score_generator
from ..progress import progress
from ..validation import check_float, check_int
from .base import GenerativeModel
from .gaussian import COMMON_SCHEMA, MEMORY_BUDGET_BYTES, _flat_unit, torch_dtype
from .registry import register
from .schema import Param

BANDWIDTH_RULES = ("scott", "silverman", "cv")
#: bandwidths that give finite, meaningful densities for pixels in [0, 1]: below 1e-6 the kernel
#: normaliser overflows and every held-out image has density 0; above 1e3 every image of any
#: resolution gets the same density (and past ~1e22 the float32 kernel exponent underflows to NaN)
BANDWIDTH_RANGE = (1e-6, 1e3)
EXACT_NEIGHBOURS = 16
DEFAULT_GRID = np.geomspace(1e-3, 1.0, 31)


def check_bandwidth(name: str, value) -> float:
    """A finite bandwidth inside :data:`BANDWIDTH_RANGE` (pixels scaled to [0, 1])."""
    h = check_float(name, value, minimum=0.0, exclusive=True)
    lo, hi = BANDWIDTH_RANGE
    if not lo <= h <= hi:
        raise GenlabError(
            f"{name}={value!r} is outside {lo:g}..{hi:g}: pixels are scaled to [0, 1], so a kernel width outside this range gives no meaningful density"
        )
    return h


def rule_of_thumb_bandwidth(X: torch.Tensor, rule: str) -> float:
    """Scott's or Silverman's rule for an isotropic kernel, scaled by the RMS std of X (N, D)."""
    n, d = X.shape
    sigma = float(X.to(torch.float64).var(0, unbiased=True).mean().sqrt()) if n > 1 else 1.0
    sigma = sigma if sigma > 0 else 1.0
    if rule == "scott":
        return sigma * n ** (-1.0 / (d + 4))
    return sigma * (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))


def _sq_dist_chunks(Q: torch.Tensor, T: torch.Tensor, exact_neighbours: int = EXACT_NEIGHBOURS):
    """Yield (start, far_d2, near_d2) for row chunks of Q (m, D) against all of T (n, D).

    ``near_d2`` (rows, k) float64 holds the exact squared distances to each query's k
    nearest training points (the terms that dominate the kernel sum); ``far_d2``
    (rows, n) in Q's dtype holds the GEMM distances to the rest, with +inf where the
    near ones were.
    """
    m, d = Q.shape
    n = T.shape[0]
    k = min(exact_neighbours, n)
    centre = T.mean(0, keepdim=True)  # centring shrinks the norms, so the GEMM expansion cancels less
    Tc = T - centre
    t_norm = Tc.pow(2).sum(1)
    per_row = 2 * n * T.element_size() + k * d * 8
    step = max(1, min(m, MEMORY_BUDGET_BYTES // per_row))
    T64 = T.to(torch.float64)
    for start in range(0, m, step):
        q = Q[start : start + step]
        qc = q - centre
        far = (qc.pow(2).sum(1, keepdim=True) + t_norm[None]).sub_(qc @ Tc.T, alpha=2.0).clamp_(min=0)
        idx = torch.topk(far, k, dim=1, largest=False).indices
        near = (q.to(torch.float64)[:, None, :] - T64[idx]).pow(2).sum(-1)
        far.scatter_(1, idx, math.inf)
        yield start, far, near


def _log_kernel_sum(
    far_d2: torch.Tensor, near_d2: torch.Tensor, bandwidth: float, n_train: int, n_dims: int
) -> torch.Tensor:
    """log((1/n) Σ N(x; xᵢ, h²I)) per row, float64.

    Log-sum-exp shifted by the largest (nearest) term: near terms in float64, far terms
    in the working dtype. Far exponents are clamped at -80 (e^-80 relative to the largest
    term is below float32 resolution), which also avoids the slow underflow path of exp.
    """
    scale = -0.5 / (bandwidth * bandwidth)
    near = near_d2 * scale
    top = near.max(dim=1).values
    near_sum = (near - top[:, None]).exp_().sum(1)
    shift = near_d2.min(dim=1).values.to(far_d2.dtype)
    far_sum = (far_d2 - shift[:, None]).mul_(scale).clamp_(min=-80.0).exp_().sum(1).to(torch.float64)
    return (
        top
        + torch.log(near_sum + far_sum)
        - math.log(n_train)
        - 0.5 * n_dims * math.log(2 * math.pi * bandwidth * bandwidth)
    )


def kde_log_density(Q: torch.Tensor, T: torch.Tensor, bandwidth: float | list[float]) -> torch.Tensor:
    """Exact Gaussian-KDE log-density of each row of Q (m, D) given training points T (n, D).

    With a list of bandwidths returns (len(bandwidths), m), else (m,). Float64, nats.
    The distance GEMM runs in IEEE float32/float64 whatever the caller allowed (no TF32 on
    CUDA, no bfloat16 on CPU: see :func:`genlab.device.full_precision_matmul`), so the
    result is the same on every device.
    """
    hs = [bandwidth] if np.isscalar(bandwidth) else list(bandwidth)
    out = torch.empty((len(hs), Q.shape[0]), dtype=torch.float64, device=Q.device)
    with full_precision_matmul():
        for start, far, near in _sq_dist_chunks(Q, T):
            for i, h in enumerate(hs):
                out[i, start : start + far.shape[0]] = _log_kernel_sum(far, near, float(h), T.shape[0], T.shape[1])
    return out[0] if np.isscalar(bandwidth) else out


@register("kde")
class KernelDensity(GenerativeModel):
    """Gaussian kernel density estimate (exact), bandwidth by rule or by k-fold cross-validation.

    Parameters
    ----------
    bandwidth : float or {"cv", "scott", "silverman"}
        Kernel standard deviation h in pixel units scaled to [0, 1], or how to choose it.
    bandwidth_grid : array-like or None
        Candidates for ``"cv"``; default: 31 values from 1e-3 to 1 (log-spaced), then 11
        values refining around the best.
    cv : int
        Folds for ``"cv"``.
    dtype : {"float32", "float64"}
        Storage/GEMM precision (the dominant distances are always refined in float64).
    device : str
    random_state : int or None
        Seeds the dequantisation of the stored training points and the CV folds.

    Attributes
    ----------
    training_data_ : (n, D) dequantised training images in [0, 1].
    bandwidth_ : float, the bandwidth used.
    cv_results_ : dict with ``bandwidth``, ``mean_test_score`` (held-out nats per image) and
        ``std_test_score`` (only for ``"cv"``).
    """

    likelihood = "exact"
    parameter_schema = {
        "bandwidth": Param(
            "float",
            "cv",
            choices=BANDWIDTH_RULES,
            low=0.0,
            low_inclusive=False,
            help="kernel standard deviation (pixels in [0, 1]) or how to choose it",
        ),
        "bandwidth_grid": Param(
            "array", None, nullable=True, help="candidates for 'cv' (None = 31 log-spaced values, then a refinement)"
        ),
        "cv": Param("int", 5, low=2, help="folds for 'cv'"),
        **COMMON_SCHEMA,
    }

    def __init__(
        self,
        bandwidth: float | str = "cv",
        bandwidth_grid=None,
        cv: int = 5,
        dtype: str = "float32",
        device: str = "auto",
        random_state: int | None = 0,
    ) -> None:
        self.bandwidth = bandwidth
        self.bandwidth_grid = bandwidth_grid
        self.cv = cv
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if isinstance(self.bandwidth, str):
            if self.bandwidth not in BANDWIDTH_RULES:
                raise GenlabError(
                    f"bandwidth={self.bandwidth!r}: use a positive number or one of {', '.join(BANDWIDTH_RULES)}"
                )
        else:
            check_bandwidth("bandwidth", self.bandwidth)
        if self.bandwidth_grid is not None:
            grid = np.asarray(self.bandwidth_grid, dtype=object).ravel()
            if grid.size == 0:
                raise GenlabError("bandwidth_grid is empty; give positive bandwidths (or None for the default grid)")
            for h in grid:
                check_bandwidth("bandwidth_grid", h)
        check_int("cv", self.cv, minimum=2)
        torch_dtype(self.dtype)

    def _fit(self, images, labels) -> None:
        self._check_params()
        dt = torch_dtype(self.dtype)
        seed = 0 if self.random_state is None else int(self.random_state)
        X = _flat_unit(images, dt, self.device_, torch.Generator().manual_seed(seed))
        self.training_data_ = X
        if isinstance(self.bandwidth, str):
            if self.bandwidth == "cv":
                self.bandwidth_, self.cv_results_ = self._cross_validate(X, seed)
            else:
                self.bandwidth_ = rule_of_thumb_bandwidth(X, self.bandwidth)
                if not BANDWIDTH_RANGE[0] <= self.bandwidth_ <= BANDWIDTH_RANGE[1]:
                    raise GenlabError(
                        f"bandwidth={self.bandwidth!r}: the rule gives {self.bandwidth_:g}, outside {BANDWIDTH_RANGE[0]:g}..{BANDWIDTH_RANGE[1]:g} (the images barely vary); give a bandwidth"
                    )
        else:
            self.bandwidth_ = check_bandwidth("bandwidth", self.bandwidth)

    def _cross_validate(self, X: torch.Tensor, seed: int) -> tuple[float, dict]:
        k = int(self.cv)
        n = X.shape[0]
        if n < k:
            raise GenlabError(f"cv={k} folds need at least {k} images, got {n}")
        fixed_grid = self.bandwidth_grid is not None
        grid = np.asarray(self.bandwidth_grid if fixed_grid else DEFAULT_GRID, dtype=np.float64).ravel()
        if (
            grid.size == 0
            or not np.all(np.isfinite(grid))
            or np.any(grid < BANDWIDTH_RANGE[0])
            or np.any(grid > BANDWIDTH_RANGE[1])
        ):
            raise GenlabError(f"bandwidth_grid must hold bandwidths in {BANDWIDTH_RANGE[0]:g}..{BANDWIDTH_RANGE[1]:g}")
        folds = list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))
        idx = [(torch.as_tensor(tr, device=X.device), torch.as_tensor(te, device=X.device)) for tr, te in folds]
        results = self._grid_scores(X, idx, grid)
        if not fixed_grid:
            best = grid[int(np.argmax(results.mean(1)))]
            ratio = grid[1] / grid[0]
            fine = np.geomspace(best / ratio, best * ratio, 11)
            grid = np.concatenate([grid, fine])
            results = np.concatenate([results, self._grid_scores(X, idx, fine)])
        order = np.argsort(grid)
        grid, results = grid[order], results[order]
        mean = results.mean(1)
        best_i = int(np.argmax(mean))
        return float(grid[best_i]), {"bandwidth": grid, "mean_test_score": mean, "std_test_score": results.std(1)}

    def _grid_scores(self, X: torch.Tensor, folds, grid: np.ndarray) -> np.ndarray:
        """Mean held-out log-likelihood (nats per image) for each bandwidth and fold: (G, k)."""
        scores = np.zeros((len(grid), len(folds)))
        for j, (train, test) in enumerate(progress(folds, desc="kde bandwidth CV", unit="fold")):
            ll = kde_log_density(X[test], X[train], list(grid))
            scores[:, j] = ll.mean(1).cpu().numpy()
        return scores

    def _log_likelihood(self, images):
        Q = _flat_unit(images, self.training_data_.dtype, self.training_data_.device, score_generator())
        return kde_log_density(Q, self.training_data_, self.bandwidth_)

    def _sample(self, n, labels, generator, **options):
        T = self.training_data_
        pick = torch.randint(T.shape[0], (n,), generator=generator).to(T.device)
        noise = torch.randn((n, T.shape[1]), generator=generator, dtype=T.dtype).to(T.device)
        return (T[pick] + self.bandwidth_ * noise).clamp(0, 1).reshape(n, *self.image_shape_)

    def _after_load(self) -> None:
        self.training_data_ = self.training_data_.to(self.device_)

    def _check_loaded(self) -> None:
        data = self.training_data_
        if not isinstance(data, torch.Tensor) or data.ndim != 2 or data.shape[0] < 1:
            raise GenlabError("fitted.training_data_: expected the (n, D) training points")
        self._expect_tensor("training_data_", (data.shape[0], self.n_dims_))
        check_bandwidth("fitted.bandwidth_", self.bandwidth_)
