"""The standard normal prior as a latent sampler."""

from __future__ import annotations

import math

import torch

from .base import LatentSampler


class PriorSampler(LatentSampler):
    """Codes from N(0, I): what a VAE/WAE was trained to match. ``fit`` only records d."""

    kind = "prior"

    def _fit(self, codes: torch.Tensor) -> None:
        pass

    def _sample(self, n: int, generator: torch.Generator | None, temperature: float) -> torch.Tensor:
        return torch.randn((n, self.latent_dim_), generator=generator) * temperature

    def _log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        c = codes.to(torch.float64)
        return -0.5 * c.pow(2).sum(1) - 0.5 * c.shape[1] * math.log(2 * math.pi)
