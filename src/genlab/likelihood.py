"""The one likelihood convention every genlab model uses.

* Pixels are uint8 values ``x`` in ``{0, ..., 255}``.
* A model's density ``p`` is over the unit cube ``[0, 1]^D``: a pixel ``x`` becomes
  ``u = (x + e) / 256`` with ``e ~ Uniform[0, 1)`` (uniform dequantisation), so each
  uint8 image owns a cell of volume ``256^-D``.
* ``score_samples`` returns ``log p(u)`` in **nats** per image, where ``D = C*H*W``.
  Because ``log P(x) >= E_e[log p(u)] - D ln 256`` (Jensen), the discrete likelihood is
  bounded by it, and
  ``bits/dim = (-log p(u) + D ln 256) / (D ln 2)``.
  The uniform model gives ``log p = 0`` and exactly 8 bits/dim: the "wrong way" baseline.
* Scores are reproducible: the dequantisation noise used for scoring is drawn from a
  generator with a fixed seed (:data:`SCORE_DEQUANTIZATION_SEED`).
* Generated values ``u`` in ``[0, 1]`` go back to pixels with ``floor(256 u)`` clipped
  to ``0..255``, the inverse of the dequantisation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import GenlabError

LN_256 = math.log(256.0)
LN_2 = math.log(2.0)
SCORE_DEQUANTIZATION_SEED = 0


def dequantize(
    images_uint8: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    noise: bool = True,
) -> torch.Tensor:
    """Map uint8 images to ``[0, 1]``: ``(x + e) / 256`` with ``e ~ U[0, 1)``.

    With ``noise=False`` the cell centre ``(x + 0.5) / 256`` is returned instead.
    Shape is preserved. The noise is drawn on the CPU (so a seed gives the same values
    on every device) and moved to ``images_uint8``'s device.
    """
    x = images_uint8.to(dtype)
    if noise:
        # drawn in float32 whatever ``dtype`` is, so float32 and float64 models see the same points
        e = torch.rand(x.shape, generator=generator, dtype=torch.float32, device="cpu").to(device=x.device, dtype=dtype)
    else:
        e = torch.full_like(x, 0.5)
    return (x + e) / 256.0


def check_finite_outputs(unit: torch.Tensor) -> None:
    """Raise a GenlabError if generated values hold NaN/inf (they would silently become black pixels)."""
    if unit.is_floating_point() and not bool(torch.isfinite(unit).all()):
        n_bad = int((~torch.isfinite(unit)).sum())
        raise GenlabError(
            f"generated images hold {n_bad} NaN/inf pixel values: the model's weights are not finite (training diverged?) "
            "or a sampling setting is extreme; retrain with a lower lr or grad_clip, or use milder settings"
        )


def quantize(unit: torch.Tensor) -> torch.Tensor:
    """Map values in ``[0, 1]`` back to uint8 pixels: ``floor(256 u)`` clipped to 0..255.

    Non-finite values raise a GenlabError (:func:`check_finite_outputs`)."""
    check_finite_outputs(unit)
    return torch.clamp(torch.floor(unit * 256.0), 0, 255).to(torch.uint8)


def bits_per_dim(log_likelihood_nats: np.ndarray | float, n_dims: int) -> np.ndarray | float:
    """Convert a log-density of unit-cube values (nats per image) to bits per dimension
    on the 256-level pixel scale: ``(-log p + D ln 256) / (D ln 2)``."""
    return (-np.asarray(log_likelihood_nats, dtype=np.float64) + n_dims * LN_256) / (n_dims * LN_2)


def score_generator() -> torch.Generator:
    """The fixed-seed generator that makes scores reproducible."""
    return torch.Generator().manual_seed(SCORE_DEQUANTIZATION_SEED)
