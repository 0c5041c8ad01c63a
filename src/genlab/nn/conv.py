"""Convolutional encoder and decoder sized from the image shape.

The encoder halves the spatial size with stride-2 convolutions until both sides are at
most ``max_final_size`` (8x8 -> 4x4, 28x28 -> 14 -> 7, 32x32 -> 16 -> 8 -> 4,
64x64 -> ... -> 4, 7x7 stays 7x7), doubling the channels at each level (capped at
``width * max_multiplier``). The decoder replays the same plan backwards and ends at
exactly the input size, odd sizes included (a transposed convolution's
``output_padding`` restores the pixel a floor division dropped).

A side that is already small enough is not strided again (kernel 3, stride 1 on that
axis), so non-square images such as 8x64 work as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import GenlabError
from .layers import make_activation, make_norm2d


@dataclass(frozen=True)
class ConvPlan:
    """The resolution ladder shared by :class:`ConvEncoder` and :class:`ConvDecoder`.

    ``sizes[i]`` is the (H, W) at level ``i`` (``sizes[0]`` the image), ``channels[i]``
    the feature channels there; ``strides[i]`` the (sH, sW) that takes level ``i`` to
    ``i + 1``.
    """

    image_shape: tuple[int, int, int]
    sizes: tuple[tuple[int, int], ...]
    channels: tuple[int, ...]
    strides: tuple[tuple[int, int], ...]

    @property
    def n_downsamples(self) -> int:
        return len(self.strides)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of the innermost feature map."""
        return (self.channels[-1], *self.sizes[-1])

    @property
    def feature_dim(self) -> int:
        c, h, w = self.feature_shape
        return c * h * w


def conv_plan(
    image_shape: Sequence[int], width: int = 32, *, max_final_size: int = 7, max_multiplier: int = 8
) -> ConvPlan:
    """Plan the levels for images of shape (C, H, W) (see the module docstring)."""
    if len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
        raise GenlabError(f"image_shape={tuple(image_shape)} must be (C, H, W) with positive sizes")
    if int(width) < 1:
        raise GenlabError(f"width={width} must be >= 1")
    if int(max_final_size) < 1:
        raise GenlabError(f"max_final_size={max_final_size} must be >= 1")
    c, h, w = (int(s) for s in image_shape)
    sizes = [(h, w)]
    strides = []
    while True:
        sh = 2 if h > max_final_size and h >= 2 else 1
        sw = 2 if w > max_final_size and w >= 2 else 1
        if sh == sw == 1:
            break
        h, w = h // sh, w // sw  # a kernel-4, padding-1, stride-2 convolution floors n / 2
        strides.append((sh, sw))
        sizes.append((h, w))
    channels = tuple(int(width) * min(2**i, int(max_multiplier)) for i in range(len(sizes)))
    return ConvPlan((c, int(image_shape[1]), int(image_shape[2])), tuple(sizes), channels, tuple(strides))


class ConvBlock(nn.Module):
    """3x3 convolution -> norm -> activation, keeping (B, C, H, W); with ``residual`` the
    input is added back (x + block(x))."""

    def __init__(self, channels: int, *, norm: str = "group", activation: str = "relu", residual: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=norm in ("none",))
        self.norm = make_norm2d(norm, channels)
        self.act = make_activation(activation)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm(self.conv(x)))
        return x + y if self.residual else y


def _down(c_in: int, c_out: int, stride: tuple[int, int], norm: str, activation: str) -> nn.Sequential:
    kernel = tuple(4 if s == 2 else 3 for s in stride)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1, bias=norm == "none"),
        make_norm2d(norm, c_out),
        make_activation(activation),
    )


def _up(
    c_in: int,
    c_out: int,
    stride: tuple[int, int],
    target: tuple[int, int],
    source: tuple[int, int],
    norm: str,
    activation: str,
) -> nn.Sequential:
    kernel = tuple(4 if s == 2 else 3 for s in stride)
    # a stride-2, kernel-4, padding-1 transposed conv gives 2n; output_padding adds the odd pixel back
    output_padding = tuple(t - 2 * n if s == 2 else 0 for t, n, s in zip(target, source, stride))
    return nn.Sequential(
        nn.ConvTranspose2d(
            c_in, c_out, kernel, stride=stride, padding=1, output_padding=output_padding, bias=norm == "none"
        ),
        make_norm2d(norm, c_out),
        make_activation(activation),
    )


class ConvEncoder(nn.Module):
    """Images (B, C, H, W) float -> vectors (B, out_dim), or feature maps when ``out_dim`` is None.

    Parameters
    ----------
    image_shape : (C, H, W)
        Input shape; add channels here to feed conditioning maps concatenated to the image.
    out_dim : int or None
        Size of the output vector (e.g. ``2 * latent_dim`` for a Gaussian encoder, 1 for a
        discriminator). None returns the innermost feature map (B, *plan.feature_shape).
    width : int
        Channels at full resolution; each downsampling doubles them (up to ``width * max_multiplier``).
    n_blocks : int
        3x3 conv blocks at each resolution before downsampling (0 = only the strided convs).
    norm : {"group", "batch", "layer", "none"}
    activation : {"relu", "silu", "leaky_relu", "gelu", "tanh"}
    residual : bool
        Skip connections around the 3x3 blocks.
    max_final_size, max_multiplier : int
        See :func:`conv_plan`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int | None,
        *,
        width: int = 32,
        n_blocks: int = 1,
        norm: str = "group",
        activation: str = "relu",
        residual: bool = True,
        max_final_size: int = 7,
        max_multiplier: int = 8,
    ) -> None:
        super().__init__()
        self.plan = conv_plan(image_shape, width, max_final_size=max_final_size, max_multiplier=max_multiplier)
        ch = self.plan.channels
        self.stem = nn.Sequential(
            nn.Conv2d(self.plan.image_shape[0], ch[0], 3, padding=1, bias=norm == "none"),
            make_norm2d(norm, ch[0]),
            make_activation(activation),
        )
        levels = []
        for i, stride in enumerate(self.plan.strides):
            blocks = [ConvBlock(ch[i], norm=norm, activation=activation, residual=residual) for _ in range(n_blocks)]
            levels.append(nn.Sequential(*blocks, _down(ch[i], ch[i + 1], stride, norm, activation)))
        levels.append(
            nn.Sequential(
                *[ConvBlock(ch[-1], norm=norm, activation=activation, residual=residual) for _ in range(n_blocks)]
            )
        )
        self.levels = nn.Sequential(*levels)
        self.out_dim = out_dim
        self.head = nn.Linear(self.plan.feature_dim, int(out_dim)) if out_dim is not None else None

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return self.plan.feature_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) float -> (B, out_dim) or (B, C', h, w)."""
        h = self.levels(self.stem(x))
        if self.head is None:
            return h
        return self.head(h.flatten(1))


class ConvDecoder(nn.Module):
    """Vectors (B, in_dim) -> maps (B, out_channels, H, W): the mirror of :class:`ConvEncoder`.

    The last layer is a plain 3x3 convolution with no activation: the family maps its
    output to pixels or distribution parameters (e.g. ``out_channels = 2 * C`` for a mean
    and a log-scale per pixel).

    Parameters
    ----------
    image_shape : (C, H, W)
        Shape of the images to produce (the output has exactly this H and W).
    in_dim : int or None
        Size of the input vector; None takes the innermost feature map
        (B, *plan.feature_shape) directly.
    out_channels : int or None
        Output channels (default: C).
    width, n_blocks, norm, activation, residual, max_final_size, max_multiplier
        As in :class:`ConvEncoder` (use the same values to mirror an encoder).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        in_dim: int | None,
        *,
        out_channels: int | None = None,
        width: int = 32,
        n_blocks: int = 1,
        norm: str = "group",
        activation: str = "relu",
        residual: bool = True,
        max_final_size: int = 7,
        max_multiplier: int = 8,
    ) -> None:
        super().__init__()
        self.plan = conv_plan(image_shape, width, max_final_size=max_final_size, max_multiplier=max_multiplier)
        ch, sizes = self.plan.channels, self.plan.sizes
        self.in_dim = in_dim
        self.out_channels = int(out_channels) if out_channels is not None else self.plan.image_shape[0]
        if in_dim is not None:
            self.project = nn.Sequential(nn.Linear(int(in_dim), self.plan.feature_dim), make_activation(activation))
        else:
            self.project = None
        levels = [
            nn.Sequential(
                *[ConvBlock(ch[-1], norm=norm, activation=activation, residual=residual) for _ in range(n_blocks)]
            )
        ]
        for i in reversed(range(self.plan.n_downsamples)):
            up = _up(ch[i + 1], ch[i], self.plan.strides[i], sizes[i], sizes[i + 1], norm, activation)
            blocks = [ConvBlock(ch[i], norm=norm, activation=activation, residual=residual) for _ in range(n_blocks)]
            levels.append(nn.Sequential(up, *blocks))
        self.levels = nn.Sequential(*levels)
        self.head = nn.Conv2d(ch[0], self.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, in_dim) (or (B, *feature_shape) when in_dim is None) -> (B, out_channels, H, W)."""
        if self.project is not None:
            z = self.project(z).view(z.shape[0], *self.plan.feature_shape)
        return self.head(self.levels(z))
