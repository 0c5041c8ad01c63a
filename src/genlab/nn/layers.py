"""Small shared pieces: normalisation and activation by name, and an MLP block."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import GenlabError

NORMS = ("group", "batch", "layer", "none")
ACTIVATIONS = ("relu", "silu", "leaky_relu", "gelu", "tanh")


def make_activation(kind: str) -> nn.Module:
    """An activation module by name: "relu", "silu", "leaky_relu" (slope 0.2), "gelu", "tanh"."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "silu":
        return nn.SiLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if kind == "gelu":
        return nn.GELU()
    if kind == "tanh":
        return nn.Tanh()
    raise GenlabError(f"activation={kind!r} is not valid; use one of {', '.join(map(repr, ACTIVATIONS))}")


def group_count(channels: int, max_groups: int = 32) -> int:
    """Number of GroupNorm groups: the largest divisor of ``channels`` that is <= ``max_groups``."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def make_norm2d(kind: str, channels: int) -> nn.Module:
    """Normalisation for (B, C, H, W) feature maps: "group" (GroupNorm), "batch", "layer"
    (GroupNorm with one group, i.e. LayerNorm over C, H, W) or "none" (identity)."""
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise GenlabError(f"norm={kind!r} is not valid; use one of {', '.join(map(repr, NORMS))}")


def make_norm1d(kind: str, features: int) -> nn.Module:
    """Normalisation for (B, F) vectors: "layer", "batch", "group" (GroupNorm over F) or "none"."""
    if kind == "layer":
        return nn.LayerNorm(features)
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "group":
        return nn.GroupNorm(group_count(features), features)
    if kind == "none":
        return nn.Identity()
    raise GenlabError(f"norm={kind!r} is not valid; use one of {', '.join(map(repr, NORMS))}")


class MLP(nn.Sequential):
    """Linear -> [norm] -> activation -> [dropout] for each hidden layer, then a final Linear.

    Input (B, in_dim), output (B, out_dim). The output layer has no activation, so the
    caller decides what the numbers mean (logits, mean and log-variance, a score...).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        *,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = []
        prev = int(in_dim)
        for width in hidden_dims:
            layers += [nn.Linear(prev, int(width)), make_norm1d(norm, int(width)), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = int(width)
        layers.append(nn.Linear(prev, int(out_dim)))
        super().__init__(*layers)
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def zero_init_(module: nn.Module) -> nn.Module:
    """Set a layer's weight and bias to zero (e.g. the last layer of a residual branch) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
