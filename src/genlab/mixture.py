"""Gaussian-mixture kernels in torch, shared by :mod:`genlab.models.gaussian`, the pixel
mixture :mod:`genlab.models.gmm` and the latent sampler :mod:`genlab.samplers.gmm`:
densities, the EM M-step, sampling, k-means++ seeding and Lloyd iterations.

Covariance types follow scikit-learn's ``GaussianMixture``:

* ``full``      covariances (K, D, D), precision Cholesky factors (K, D, D)
* ``diag``      variances (K, D),      precision Cholesky factors (K, D)
* ``spherical`` one variance (K,),     precision Cholesky factors (K,)

``prec_chol`` is the upper-triangular P with precision = P Pᵀ, so
``log N(x; μ, Σ) = -½ (D ln 2π + ‖(x-μ) P‖²) + Σ log diag P``.

Numerics: distances are computed on centred data ``(x-μ) P`` (never by expanding
``‖x‖² - 2xμ + ‖μ‖²``, which loses all precision in float32 when variances are ~1e-6),
and Cholesky factorisations run in float64 whatever the working dtype. Work is
chunked over rows so memory stays bounded for any N.
"""

from __future__ import annotations

import math

import torch

from .device import full_precision_matmul
from .errors import GenlabError

COVARIANCE_TYPES = ("full", "diag", "spherical")
MEMORY_BUDGET_BYTES = 1 << 28  # bounds every (rows x something) temporary: 256 MiB


def precision_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Upper-triangular P with P Pᵀ = Σ⁻¹ (float64 factorisation, cast back)."""
    if covariance_type == "full":
        cov64 = covariances.to(torch.float64)
        chol, info = torch.linalg.cholesky_ex(cov64)
        if bool((info != 0).any()):
            bad = int(torch.nonzero(info)[0])
            raise GenlabError(
                f"component {bad}: covariance is not positive definite (too few points or collapsed data); increase reg_covar or decrease n_components"
            )
        eye = torch.eye(cov64.shape[-1], dtype=torch.float64, device=cov64.device).expand_as(cov64)
        inv_lower = torch.linalg.solve_triangular(chol, eye, upper=False)
        return inv_lower.transpose(-1, -2).to(covariances.dtype).contiguous()
    if bool((covariances <= 0).any()):
        raise GenlabError("a variance is zero or negative; increase reg_covar")
    return torch.rsqrt(covariances)


def log_det_precision_cholesky(prec_chol: torch.Tensor, covariance_type: str, n_dims: int) -> torch.Tensor:
    """Σ log diag P per component, (K,), float64."""
    p = prec_chol.to(torch.float64)
    if covariance_type == "full":
        return torch.log(torch.diagonal(p, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "diag":
        return torch.log(p).sum(-1)
    return n_dims * torch.log(p)


def component_log_prob(
    X: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor, covariance_type: str
) -> torch.Tensor:
    """log N(x_n; μ_k, Σ_k) for every row and component: (N, K), float64.

    X (N, D) and the parameters share one dtype/device (float32 or float64).
    """
    n, d = X.shape
    k = means.shape[0]
    out = torch.empty((n, k), dtype=torch.float64, device=X.device)
    log_det = log_det_precision_cholesky(prec_chol, covariance_type, d)
    const = -0.5 * d * math.log(2 * math.pi)
    step = _row_step(n, d * X.element_size() * (2 if covariance_type == "full" else 2 * k))
    for start in range(0, n, step):
        xs = X[start : start + step]
        if covariance_type == "full":
            with full_precision_matmul():  # no TF32/bfloat16 inputs: the density is exact to float32 rounding
                for j in range(k):  # one large GEMM per component keeps every core busy
                    y = (xs - means[j]) @ prec_chol[j]
                    out[start : start + len(xs), j] = const - 0.5 * y.pow(2).sum(1).to(torch.float64) + log_det[j]
        else:
            p = prec_chol if covariance_type == "diag" else prec_chol[:, None].expand(k, d)
            y = (xs[:, None, :] - means[None]) * p[None]
            out[start : start + len(xs)] = const - 0.5 * y.pow(2).sum(-1).to(torch.float64) + log_det[None]
    return out


def _row_step(n_rows: int, bytes_per_row: int) -> int:
    """Rows per chunk so that a chunk's temporaries fit in MEMORY_BUDGET_BYTES."""
    return max(1, min(n_rows, MEMORY_BUDGET_BYTES // max(bytes_per_row, 1)))


def estimate_parameters(
    X: torch.Tensor, resp: torch.Tensor, covariance_type: str, reg_covar: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step: (weights (K,), means (K, D), covariances) from responsibilities (N, K).

    Weights are the normalised component masses; covariances are centred second
    moments plus ``reg_covar`` on the diagonal, in X's dtype.
    """
    n, d = X.shape
    resp = resp.to(X.dtype)
    nk = resp.sum(0) + 10 * torch.finfo(X.dtype).eps
    with full_precision_matmul():  # the moments feed exact densities: no TF32/bfloat16 inputs
        means = (resp.T @ X) / nk[:, None]
        k = means.shape[0]
        if covariance_type == "full":
            cov = torch.empty((k, d, d), dtype=X.dtype, device=X.device)
            for j in range(k):
                diff = X - means[j]
                cov[j] = (diff * resp[:, j : j + 1]).T @ diff / nk[j]
                cov[j].diagonal().add_(reg_covar)
        else:
            var = torch.zeros((k, d), dtype=X.dtype, device=X.device)
            step = _row_step(n, 2 * k * d * X.element_size())
            for start in range(0, n, step):
                xs, rs = X[start : start + step], resp[start : start + step]
                var += torch.einsum("nk,nkd->kd", rs, (xs[:, None, :] - means[None]).pow(2))
            var = var / nk[:, None] + reg_covar
            cov = var if covariance_type == "diag" else var.mean(1)
    return nk / n, means, cov


def e_step(
    X: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor, covariance_type: str
) -> tuple[float, torch.Tensor]:
    """EM E-step: (mean log-likelihood per row in nats, log responsibilities (N, K) float64)."""
    weighted = component_log_prob(X, means, prec_chol, covariance_type) + torch.log(weights.to(torch.float64))[None]
    log_norm = torch.logsumexp(weighted, dim=1)
    return float(log_norm.mean()), weighted - log_norm[:, None]


def sample_gaussian_mixture(
    weights: torch.Tensor,
    means: torch.Tensor,
    covariances: torch.Tensor,
    covariance_type: str,
    n: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """n draws from a Gaussian mixture, (n, D), in random order (not grouped by component)."""
    k, d = means.shape
    counts = torch.multinomial(weights.double().cpu(), n, replacement=True, generator=generator).bincount(minlength=k)
    z = torch.randn((n, d), generator=generator, dtype=means.dtype).to(means.device)
    out = torch.empty((n, d), dtype=means.dtype, device=means.device)
    start = 0
    if covariance_type == "full":
        chol = torch.linalg.cholesky(covariances.to(torch.float64)).to(means.dtype)
    for j in range(k):
        c = int(counts[j])
        if c == 0:
            continue
        zj = z[start : start + c]
        if covariance_type == "full":
            out[start : start + c] = means[j] + zj @ chol[j].T
        else:  # diag: (D,) variances; spherical: one variance
            out[start : start + c] = means[j] + zj * covariances[j].sqrt()
        start += c
    perm = torch.randperm(n, generator=generator).to(means.device)
    return out[perm]


def _sq_dist(X: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    with full_precision_matmul():  # cdist's GEMM path: the same seeding on every device
        return torch.cdist(X, C).pow_(2)


def nearest_centre(X: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest centre, (N,) int64 (IEEE float32/64 distances on every device)."""
    with full_precision_matmul():
        return torch.cdist(X, centres).argmin(1)


def kmeans_plusplus(X: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; 2 + ln k trials per centre)."""
    n = X.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [X[first]]
    closest = _sq_dist(X, X[first : first + 1])[:, 0].to(torch.float64)
    for _ in range(1, k):
        cumulative = torch.cumsum(closest, 0)
        draws = torch.rand(trials, generator=generator, dtype=torch.float64).to(X.device) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        cand_dist = torch.minimum(closest[None], _sq_dist(X[candidates], X).to(torch.float64))
        best = int(torch.argmin(cand_dist.sum(1)))
        closest = cand_dist[best]
        centers.append(X[candidates[best]])
    return torch.stack(centers)


def lloyd(X: torch.Tensor, centers: torch.Tensor, max_iter: int = 100) -> torch.Tensor:
    """Lloyd's k-means iterations until assignments stop changing."""
    k = centers.shape[0]
    labels = None
    for _ in range(max_iter):
        new_labels = nearest_centre(X, centers)
        if labels is not None and bool((new_labels == labels).all()):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        nonempty = counts > 0
        centers = torch.where(nonempty[:, None], sums / counts.clamp(min=1)[:, None], centers)
    return centers
