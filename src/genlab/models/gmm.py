"""Gaussian mixture model fitted by EM, in torch (CPU or GPU), batched and chunked.

Mirrors ``sklearn.mixture.GaussianMixture`` (same parameters, same convergence rule:
stop when the mean log-likelihood per image changes by less than ``tol``), so results
can be checked against it, but runs in float32 by default with float64 factorisations
and centred distances — see :mod:`genlab.models.gaussian` for the numerics.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ..errors import GenlabError
from ..likelihood import score_generator
from ..mixture import (  # noqa: F401  (kmeans_plusplus, lloyd re-exported: they used to live here)
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
from ..progress import progress
from ..validation import check_images
from .base import GenerativeModel
from .gaussian import COMMON_SCHEMA, MAX_REG_COVAR, _flat_unit, torch_dtype
from .registry import register
from .schema import Param

INIT_METHODS = ("kmeans", "k-means++", "random")


@register("gmm")
class GaussianMixture(GenerativeModel):
    """Gaussian mixture over pixels, fitted by EM with k-means++ initialisation.

    Parameters
    ----------
    n_components : int
        Number of mixture components K.
    covariance_type : {"full", "diag", "spherical"}
    reg_covar : float
        Added to every covariance diagonal (pixels scaled to [0, 1]).
    max_iter : int
        EM iterations per initialisation.
    tol : float
        Convergence threshold on the change of the mean log-likelihood (nats per image).
    n_init : int
        Initialisations; the one with the best final log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random"}
        ``kmeans``: k-means++ seeding refined by Lloyd iterations (scikit-learn's default);
        ``k-means++``: the seeding alone; ``random``: random responsibilities.
    weights_init, means_init, precisions_init : array-like, optional
        Start EM from these (shapes as in scikit-learn; means in [0, 1] pixel units,
        flattened to D = C*H*W).
    dtype : {"float32", "float64"}
    device : str
    random_state : int or None

    Attributes
    ----------
    weights_ (K,), means_ (K, D), covariances_, precisions_cholesky_, converged_,
    n_iter_, lower_bound_ (mean log-likelihood of the training data, nats per image).
    """

    likelihood = "exact"
    parameter_schema = {
        "n_components": Param("int", 10, low=1, help="mixture components K"),
        "covariance_type": Param("choice", "full", choices=COVARIANCE_TYPES, help="covariance of each component"),
        "reg_covar": Param(
            "float", 1e-6, low=0.0, high=MAX_REG_COVAR, help="added to every covariance diagonal (pixels in [0, 1])"
        ),
        "max_iter": Param("int", 100, low=1, help="EM iterations per initialisation"),
        "tol": Param("float", 1e-3, low=0.0, help="convergence threshold (nats per image)"),
        "n_init": Param("int", 1, low=1, help="initialisations; the best is kept"),
        "init_params": Param("choice", "kmeans", choices=INIT_METHODS, help="initialisation of EM"),
        "weights_init": Param("array", None, nullable=True, help="initial weights (K,)"),
        "means_init": Param("array", None, nullable=True, help="initial means (K, D)"),
        "precisions_init": Param("array", None, nullable=True, help="initial precisions"),
        **COMMON_SCHEMA,
    }

    def __init__(
        self,
        n_components: int = 10,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        tol: float = 1e-3,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        dtype: str = "float32",
        device: str = "auto",
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        k, reg, max_iter, tol, n_init = (
            int(self.n_components),
            float(self.reg_covar),
            int(self.max_iter),
            float(self.tol),
            int(self.n_init),
        )
        dt = torch_dtype(self.dtype)
        if k > images.shape[0]:
            raise GenlabError(f"n_components={k} is larger than the number of images ({images.shape[0]})")
        gen = torch.Generator().manual_seed(0 if self.random_state is None else int(self.random_state))
        X = _flat_unit(images, dt, self.device_, gen)

        best = None
        for init in range(n_init):
            params = self._initial_parameters(X, k, reg, gen)
            lower_bound, converged, n_iter = -math.inf, False, 0
            bar = progress(range(1, max_iter + 1), desc=f"gmm EM (init {init + 1}/{n_init})", unit="it")
            for n_iter in bar:
                previous = lower_bound
                lower_bound, log_resp = self._e_step(X, *params)
                params = self._m_step(X, log_resp, reg)
                bar.set_postfix(loglik=f"{lower_bound:.2f}")
                if abs(lower_bound - previous) < tol:
                    converged = True
                    break
            bar.close()
            if best is None or lower_bound > best[0]:
                best = (lower_bound, params, converged, n_iter)
        lower_bound, (weights, means, cov, prec_chol), converged, n_iter = best
        if not converged:
            warnings.warn(
                f"gmm: EM did not converge in max_iter={max_iter} iterations (tol={tol}); raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = weights, means, cov, prec_chol
        self.converged_, self.n_iter_, self.lower_bound_ = bool(converged), int(n_iter), float(lower_bound)

    def _initial_parameters(self, X: torch.Tensor, k: int, reg: float, gen: torch.Generator):
        n, d = X.shape
        if self.means_init is not None:
            means0 = _as_tensor(self.means_init, (k, d), "means_init", X)
            resp = torch.zeros((n, k), dtype=X.dtype, device=X.device)
            resp[torch.arange(n), nearest_centre(X, means0)] = 1
        elif self.init_params == "random":
            resp = torch.rand((n, k), generator=gen, dtype=X.dtype).to(X.device)
            resp /= resp.sum(1, keepdim=True)
        else:
            centers = kmeans_plusplus(X, k, gen)
            if self.init_params == "kmeans":
                centers = lloyd(X, centers)
            resp = torch.zeros((n, k), dtype=X.dtype, device=X.device)
            resp[torch.arange(n), nearest_centre(X, centers)] = 1
        weights, means, cov = estimate_parameters(X, resp, self.covariance_type, reg)
        if self.weights_init is not None:
            weights = _as_tensor(self.weights_init, (k,), "weights_init", X)
            if abs(float(weights.sum()) - 1.0) > 1e-5 or bool((weights < 0).any()):
                raise GenlabError("weights_init must be non-negative and sum to 1")
        if self.means_init is not None:
            means = means0
        if self.precisions_init is not None:
            shape = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
            prec = _as_tensor(self.precisions_init, shape, "precisions_init", X).to(torch.float64)
            if self.covariance_type == "full":
                chol, info = torch.linalg.cholesky_ex(prec)
                if bool((info != 0).any()):
                    raise GenlabError("precisions_init: every precision matrix must be symmetric positive definite")
                prec_chol = chol.to(X.dtype)
                cov = torch.linalg.inv(prec).to(X.dtype)
            else:
                prec_chol = prec.sqrt().to(X.dtype)
                cov = (1.0 / prec).to(X.dtype)
            return weights, means, cov, prec_chol
        return weights, means, cov, precision_cholesky(cov, self.covariance_type)

    def _e_step(self, X, weights, means, cov, prec_chol):
        return e_step(X, weights, means, prec_chol, self.covariance_type)

    def _m_step(self, X, log_resp, reg):
        weights, means, cov = estimate_parameters(X, log_resp.exp(), self.covariance_type, reg)
        return weights, means, cov, precision_cholesky(cov, self.covariance_type)

    # ------------------------------------------------------------------ use
    def _weighted_log_prob(self, images: torch.Tensor, generator) -> torch.Tensor:
        X = _flat_unit(images, self.means_.dtype, self.means_.device, generator)
        return (
            component_log_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type)
            + torch.log(self.weights_.to(torch.float64))[None]
        )

    def _log_likelihood(self, images):
        return torch.logsumexp(self._weighted_log_prob(images, score_generator()), dim=1)

    def _sample(self, n, labels, generator, **options):
        x = sample_gaussian_mixture(self.weights_, self.means_, self.covariances_, self.covariance_type, n, generator)
        return x.clamp(0, 1).reshape(n, *self.image_shape_)

    def predict_proba(self, X) -> np.ndarray:
        """Component responsibilities (N, K)."""
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        with torch.no_grad():
            w = self._weighted_log_prob(images, score_generator())
        return torch.softmax(w, dim=1).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Most likely component of each image (N,)."""
        return self.predict_proba(X).argmax(1)

    def n_parameters(self) -> int:
        """Free parameters: weights (K-1), means (K·D) and covariances."""
        self._check_fitted()
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) // 2, "diag": k * d, "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion on X (lower is better): -2 Σ log p + p ln N."""
        n = check_images(X).shape[0]
        return float(-2.0 * self.score(X) * n + self.n_parameters() * math.log(n))

    def aic(self, X) -> float:
        """Akaike information criterion on X (lower is better)."""
        n = check_images(X).shape[0]
        return float(-2.0 * self.score(X) * n + 2.0 * self.n_parameters())

    def _after_load(self) -> None:
        for key in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            setattr(self, key, getattr(self, key).to(self.device_))

    def _check_loaded(self) -> None:
        k, d = int(self.n_components), self.n_dims_
        cov = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
        self._expect_tensor("weights_", (k,))
        self._expect_tensor("means_", (k, d))
        self._expect_tensor("covariances_", cov)
        self._expect_tensor("precisions_cholesky_", cov)


def _as_tensor(value, shape, name: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)
    if tuple(t.shape) != tuple(shape):
        raise GenlabError(f"{name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not bool(torch.isfinite(t).all()):
        raise GenlabError(f"{name}: contains NaN or inf")
    return t
