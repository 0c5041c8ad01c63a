"""Embeddings of diffusion time steps and class labels."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GenlabError
from .layers import make_activation


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style features of scalar positions/time steps.

    ``t`` (B,) int or float -> (B, dim) float32 with columns
    ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ..., sin(t w_{h-1})]``,
    ``w_k = max_period ** (-k / h)``, ``h = dim // 2``; an odd ``dim`` gets a zero last column.
    """
    if t.ndim != 1:
        raise GenlabError(f"t: expected shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.to(torch.float32)[:, None] * freqs[None]
    out = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        out = torch.cat([out, torch.zeros_like(out[:, :1])], dim=1)
    return out


class SinusoidalEmbedding(nn.Module):
    """Module form of :func:`sinusoidal_embedding` (no parameters): (B,) -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = int(dim)
        self.max_period = float(max_period)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(t, self.dim, self.max_period)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP: time steps (B,) -> (B, out_dim).

    ``t`` may be integer steps (0..T-1) or continuous times; ``scale`` multiplies it first
    (e.g. 1000 for t in [0, 1], so the frequencies see a useful range).
    """

    def __init__(
        self,
        out_dim: int,
        *,
        frequency_dim: int = 128,
        activation: str = "silu",
        scale: float = 1.0,
        max_period: float = 10000.0,
    ) -> None:
        super().__init__()
        self.frequency_dim = int(frequency_dim)
        self.scale = float(scale)
        self.max_period = float(max_period)
        self.mlp = nn.Sequential(
            nn.Linear(self.frequency_dim, out_dim), make_activation(activation), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(
            sinusoidal_embedding(t * self.scale if self.scale != 1.0 else t, self.frequency_dim, self.max_period)
        )


class LabelEmbedding(nn.Module):
    """Class labels (B,) int64 -> (B, dim), with one extra learned "null" class.

    Row ``null_index == n_classes`` stands for "no label": classifier-free guidance trains
    with labels randomly replaced by it (``drop_prob``, only in training mode) and samples
    by mixing the conditional and the null prediction.
    """

    def __init__(self, n_classes: int, dim: int, *, drop_prob: float = 0.0) -> None:
        super().__init__()
        if n_classes < 1:
            raise GenlabError(f"n_classes={n_classes} must be >= 1")
        if not 0.0 <= drop_prob < 1.0:
            raise GenlabError(f"drop_prob={drop_prob} must be in [0, 1)")
        self.n_classes = int(n_classes)
        self.drop_prob = float(drop_prob)
        self.table = nn.Embedding(self.n_classes + 1, dim)

    @property
    def null_index(self) -> int:
        return self.n_classes

    def null_labels(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """(batch_size,) int64 filled with the null class."""
        return torch.full(
            (batch_size,),
            self.null_index,
            dtype=torch.int64,
            device=device if device is not None else self.table.weight.device,
        )

    def forward(
        self, labels: torch.Tensor | None, *, drop: torch.Tensor | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """Embed ``labels`` (B,) int64 in 0..n_classes (n_classes = null).

        ``labels=None`` embeds the null class for ``batch_size`` rows. ``drop`` (B,) bool
        forces rows to the null class; when omitted in training mode, each row is dropped
        with probability ``drop_prob`` (drawn from torch's global generator).
        """
        if labels is None:
            if batch_size is None:
                raise GenlabError("LabelEmbedding: pass labels or batch_size")
            labels = self.null_labels(batch_size)
        if drop is None and self.training and self.drop_prob > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.drop_prob
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.null_index), labels)
        return self.table(labels)
