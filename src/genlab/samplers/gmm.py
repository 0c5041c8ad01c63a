"""A Gaussian mixture over codes, fitted by EM with genlab's own GMM functions."""

from __future__ import annotations

import math
import warnings

import torch

from ..errors import GenlabError
from ..mixture import (
    COVARIANCE_TYPES,
    component_log_prob,
    e_step,
    estimate_parameters,
    kmeans_plusplus,
    lloyd,
    nearest_centre,
    precision_cholesky,
    sample_gaussian_mixture,
)
from ..validation import check_choice, check_float, check_int
from .base import LatentSampler


class GaussianMixtureSampler(LatentSampler):
    """Ex-post density of the codes: a K-component Gaussian mixture fitted by EM.

    Ghosh et al. (2020) fit such a mixture (K = 10, full covariances) on the training
    codes of an autoencoder and sample from it instead of the prior; it places samples
    where the decoder was trained and improves FID markedly for VAEs and WAEs alike.

    Uses the kernels of :mod:`genlab.mixture` (k-means++/Lloyd initialisation, E- and
    M-steps, sampling), like :class:`genlab.models.gmm.GaussianMixture` (that class fits
    images; this one fits float codes, in float64 — d is small).

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag", "spherical"}
    reg_covar : float
        Added to the covariance diagonals (code units).
    max_iter : int
    tol : float
        Stop when the mean log-likelihood per code changes by less than this (nats).
    random_state : int
        Seeds the k-means++ initialisation.
    """

    kind = "gmm"

    def __init__(
        self,
        n_components: int = 10,
        covariance_type: str = "full",
        reg_covar: float = 1e-4,
        max_iter: int = 200,
        tol: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _fit(self, codes: torch.Tensor) -> None:
        k = check_int("latent_components", self.n_components, minimum=1)
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        reg = check_float("reg_covar", self.reg_covar, minimum=0.0)
        max_iter = check_int("max_iter", self.max_iter, minimum=1)
        tol = check_float("tol", self.tol, minimum=0.0)
        if k > codes.shape[0]:
            raise GenlabError(
                f"latent_components={k} is larger than the number of codes ({codes.shape[0]}); use fewer components or more images"
            )
        X = codes.to(torch.float64)
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        centres = lloyd(X, kmeans_plusplus(X, k, gen))
        resp = torch.zeros((X.shape[0], k), dtype=X.dtype, device=X.device)
        resp[torch.arange(X.shape[0]), nearest_centre(X, centres)] = 1
        weights, means, cov = estimate_parameters(X, resp, self.covariance_type, reg)
        prec_chol = precision_cholesky(cov, self.covariance_type)
        lower_bound, converged, n_iter = -math.inf, False, 0
        for n_iter in range(1, max_iter + 1):
            previous = lower_bound
            lower_bound, log_resp = e_step(X, weights, means, prec_chol, self.covariance_type)
            weights, means, cov = estimate_parameters(X, log_resp.exp(), self.covariance_type, reg)
            prec_chol = precision_cholesky(cov, self.covariance_type)
            if abs(lower_bound - previous) < tol:
                converged = True
                break
        if not converged:
            warnings.warn(f"latent GMM: EM did not converge in {max_iter} iterations", RuntimeWarning, stacklevel=3)
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = weights, means, cov, prec_chol
        self.lower_bound_, self.n_iter_ = float(lower_bound), int(n_iter)

    def _sample(self, n: int, generator: torch.Generator | None, temperature: float) -> torch.Tensor:
        gen = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
        z = sample_gaussian_mixture(
            self.weights_, self.means_, self.covariances_ * temperature**2, self.covariance_type, n, gen
        )
        return z.to(torch.float32)

    def _log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        X = codes.to(device=self.means_.device, dtype=self.means_.dtype)
        weighted = (
            component_log_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type)
            + torch.log(self.weights_.to(torch.float64))[None]
        )
        return torch.logsumexp(weighted, dim=1)
