"""Fréchet distance between Gaussians fitted to two feature sets (the math behind FID).

For N(μ₁, Σ₁) and N(μ₂, Σ₂) the squared Fréchet (2-Wasserstein) distance is
(Dowson & Landau 1982, "The Fréchet distance between multivariate normal distributions")

    FD = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).

With Inception-v3 pool features this is the FID of Heusel et al. 2017 ("GANs trained by a
two time-scale update rule converge to a local Nash equilibrium"); genlab applies it to
whatever features the caller passes. Units: squared feature units (not normalised).

Numerics. pytorch-fid and torch-fidelity take ``scipy.linalg.sqrtm`` of the
non-symmetric product Σ₁Σ₂, which can return complex values or fail on singular
covariances (N < F) and needs an ad-hoc ``eps·I`` retry. Here the trace term uses the
identity ``Tr (Σ₁Σ₂)^{1/2} = Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}`` (both matrices share their
eigenvalues): two symmetric eigendecompositions in float64, tiny negative eigenvalues
from rounding clipped to 0. The result is real, works for singular covariances, and is
clipped at 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ._neighbours import as_features, check_same_width, rows_per_chunk


def gaussian_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set.

    Parameters
    ----------
    features : array or tensor (N, F), N >= 2.

    Returns
    -------
    mean : (F,) float64 ndarray.
    covariance : (F, F) float64 ndarray, ``Σ (x − μ)(x − μ)ᵀ / (N − 1)`` (as
        ``numpy.cov(rowvar=False)``, pytorch-fid and torch-fidelity).

    Accumulated in float64 over row chunks on the input's device.
    """
    x = as_features(features, "features", min_rows=2, why="a covariance needs two rows")
    n, f = x.shape
    step = rows_per_chunk(n, 8 * f)
    total = torch.zeros(f, dtype=torch.float64, device=x.device)
    for start in range(0, n, step):
        total += x[start : start + step].to(torch.float64).sum(0)
    mean = total / n
    scatter = torch.zeros((f, f), dtype=torch.float64, device=x.device)
    for start in range(0, n, step):
        centred = x[start : start + step].to(torch.float64) - mean
        scatter.addmm_(centred.T, centred)
    covariance = scatter / (n - 1)
    return mean.cpu().numpy(), covariance.cpu().numpy()


def _as_statistic(value: Any, name: str, ndim: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().to(torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise GenlabError(f"{name}: not a numeric array ({err})") from None
    if t.ndim != ndim or (ndim == 2 and t.shape[0] != t.shape[1]):
        expected = "(F,)" if ndim == 1 else "(F, F)"
        raise GenlabError(f"{name}: shape {tuple(t.shape)}, expected {expected}")
    if not bool(torch.isfinite(t).all()):
        raise GenlabError(f"{name}: holds NaN or inf")
    return t


def _psd_sqrt(sym: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh(sym)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance_from_statistics(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Parameters
    ----------
    mu1, mu2 : (F,) means.
    sigma1, sigma2 : (F, F) symmetric positive semi-definite covariances (symmetrised
        here, so rounding asymmetry does not matter).

    Returns
    -------
    float, ``‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}``, >= 0,
    computed in float64 (on the device of ``sigma1`` when it is a tensor).
    """
    m1, m2 = _as_statistic(mu1, "mu1", 1), _as_statistic(mu2, "mu2", 1)
    s1, s2 = _as_statistic(sigma1, "sigma1", 2), _as_statistic(sigma2, "sigma2", 2)
    f = m1.shape[0]
    for name, t in (("sigma1", s1), ("mu2", m2), ("sigma2", s2)):
        if t.shape[0] != f:
            raise GenlabError(f"{name}: dimension {t.shape[0]} does not match mu1's {f}")
    device = s1.device
    m1, m2, s2 = m1.to(device), m2.to(device), s2.to(device)
    s1 = (s1 + s1.T) / 2
    s2 = (s2 + s2.T) / 2
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = eigenvalues.clamp(min=0).sqrt().sum()
    diff = m1 - m2
    value = diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2.0 * trace_sqrt
    return max(float(value), 0.0)


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, F), (N_b, F).

    Each set needs at least 2 rows; with N < F the covariances are singular, which the
    computation handles, but the estimate is then strongly biased upwards (FID's
    well-known small-sample bias, Chong & Forsyth 2020, "Effectively unbiased FID") —
    compare models only at equal N.
    """
    a = as_features(features_a, "features_a", min_rows=2, why="a covariance needs two rows")
    b = as_features(features_b, "features_b", min_rows=2, why="a covariance needs two rows")
    check_same_width(a, b, "features_a", "features_b")
    mu_a, sigma_a = gaussian_statistics(a)
    mu_b, sigma_b = gaussian_statistics(b)
    return frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)
