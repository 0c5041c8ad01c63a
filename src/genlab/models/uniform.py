"""The "wrong way": every pixel independent and uniform on 0..255.

Real images occupy a tiny, low-dimensional part of pixel space; this model spreads its
mass over all of it, so its samples look like TV static and its likelihood is the floor
every real model must beat: ``log p = 0`` on the unit cube, exactly 8 bits/dim.
"""

from __future__ import annotations

import torch

from .base import GenerativeModel
from .registry import register


@register("uniform")
class UniformNoise(GenerativeModel):
    """Every pixel i.i.d. uniform on 0..255 — the baseline that shows what not to do."""

    likelihood = "exact"

    def __init__(self) -> None:
        pass

    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.n_train_ = int(images.shape[0])

    def _sample(self, n: int, labels: torch.Tensor | None, generator: torch.Generator, **options) -> torch.Tensor:
        return torch.randint(0, 256, (n, *self.image_shape_), generator=generator, dtype=torch.uint8)

    def _log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        # density 1 on the unit cube: log p = 0 nats, i.e. exactly 8 bits/dim
        return torch.zeros(images.shape[0], dtype=torch.float64)
