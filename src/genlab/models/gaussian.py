"""``gaussian``: one Gaussian over pixels; the Gaussian kernels it shares with the mixture
and the latent GMM sampler live in :mod:`genlab.mixture`."""

from __future__ import annotations

import torch

from ..likelihood import dequantize, score_generator
from ..mixture import (  # noqa: F401  (re-exported: the kernels used to live here)
    COVARIANCE_TYPES,
    MEMORY_BUDGET_BYTES,
    component_log_prob,
    estimate_parameters,
    log_det_precision_cholesky,
    precision_cholesky,
    sample_gaussian_mixture,
)
from ..validation import check_choice
from .base import GenerativeModel
from .registry import register
from .schema import Param

#: pixel variances are at most 0.25 on [0, 1]; a regulariser far above that only flattens the density
#: (and past ~1e38 overflows float32 to inf variances and NaN scores)
MAX_REG_COVAR = 1e3

#: the parameters the classical (non-neural) models share
COMMON_SCHEMA = {
    "dtype": Param(
        "choice",
        "float32",
        choices=("float32", "float64"),
        help="working precision (factorisations always run in float64)",
    ),
    "device": Param("str", "auto", help="auto, cpu, cuda, ..."),
    "random_state": Param(
        "int", 0, low=0, nullable=True, help="seed of the dequantisation noise (and of initialisation/folds)"
    ),
}


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[check_choice("dtype", name, ("float32", "float64"))]


@register("gaussian")
class Gaussian(GenerativeModel):
    """One Gaussian over pixels (full or diagonal covariance, regularised): the simplest real density model.

    Parameters
    ----------
    covariance_type : {"full", "diag"}
    reg_covar : float
        Added to the covariance diagonal (variance units of pixels scaled to [0, 1]).
    dtype : {"float32", "float64"}
        Working precision (factorisations always run in float64).
    device : str
        "auto", "cpu", "cuda", ...
    random_state : int or None
        Seed of the dequantisation noise used in ``fit``.
    """

    likelihood = "exact"
    parameter_schema = {
        "covariance_type": Param("choice", "full", choices=("full", "diag"), help="full or diagonal covariance"),
        "reg_covar": Param(
            "float", 1e-6, low=0.0, high=MAX_REG_COVAR, help="added to the covariance diagonal (pixels in [0, 1])"
        ),
        **COMMON_SCHEMA,
    }

    def __init__(
        self,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        dtype: str = "float32",
        device: str = "auto",
        random_state: int | None = 0,
    ) -> None:
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        torch_dtype(self.dtype)

    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self._check_params()
        reg = float(self.reg_covar)
        dt = torch_dtype(self.dtype)
        X = _flat_unit(images, dt, self.device_, torch.Generator().manual_seed(self.random_state or 0))
        resp = torch.ones((X.shape[0], 1), dtype=dt, device=X.device)
        _, means, cov = estimate_parameters(X, resp, self.covariance_type, reg)
        self.mean_ = means[0]
        self.covariance_ = cov[0]
        self.precision_cholesky_ = precision_cholesky(cov, self.covariance_type)[0]

    def _sample(self, n, labels, generator, **options):
        one = torch.ones(1, dtype=torch.float64)
        x = sample_gaussian_mixture(one, self.mean_[None], self.covariance_[None], self.covariance_type, n, generator)
        return x.clamp(0, 1).reshape(n, *self.image_shape_)

    def _log_likelihood(self, images):
        X = _flat_unit(images, self.mean_.dtype, self.mean_.device, score_generator())
        return component_log_prob(X, self.mean_[None], self.precision_cholesky_[None], self.covariance_type)[:, 0]

    def _after_load(self) -> None:
        for key in ("mean_", "covariance_", "precision_cholesky_"):
            setattr(self, key, getattr(self, key).to(self.device_))

    def _check_loaded(self) -> None:
        d = self.n_dims_
        cov = (d, d) if self.covariance_type == "full" else (d,)
        self._expect_tensor("mean_", (d,))
        self._expect_tensor("covariance_", cov)
        self._expect_tensor("precision_cholesky_", cov)


def _flat_unit(
    images: torch.Tensor, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> dequantised (N, D) on ``device``."""
    return dequantize(images, generator, dtype=dtype).reshape(images.shape[0], -1).to(device)
