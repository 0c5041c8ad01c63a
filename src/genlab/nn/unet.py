"""A U-Net for diffusion models, sized from the image shape.

Layout (Ho et al. 2020; Dhariwal & Nichol 2021), lean by default:

* optional *patchify* (space-to-depth, ``patch_size`` p): the image is padded to a
  multiple of p and folded into ``C * p * p`` channels at ``H/p x W/p``, so the costly
  full-resolution convolutions run on p*p times fewer pixels ("simple diffusion",
  Hoogeboom et al. 2023); the output is unfolded and cropped back;
* levels whose sizes halve with ceiling division (28 -> 14 -> 7, 7 -> 4), so odd sizes
  need no padding: the upsampling path resizes to the exact size of each skip tensor;
* residual blocks with GroupNorm and SiLU, conditioned by FiLM (scale and shift of the
  second normalisation) on one embedding vector = time embedding + class embedding +
  projected conditioning vector;
* self-attention (multi-head, optionally followed by cross-attention to a token
  sequence) at the low resolutions and in the middle;
* the last layer of every residual branch and the output convolution start at zero,
  so the untrained network is the identity plus a zero prediction (stable early steps).

Conditioning inputs, all optional and each with a learned "null" for classifier-free
guidance (rows flagged by ``drop`` use it):

* ``labels`` (B,) int64 in 0..n_classes-1 (``n_classes`` is the null class);
* ``cond`` (B, cond_dim): a vector added to the embedding (FiLM), e.g. a pooled text
  embedding;
* ``context`` (B, L, context_dim) with ``context_mask`` (B, L) bool (True = keep): a
  token sequence read by cross-attention, e.g. text-encoder token states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError
from .embeddings import LabelEmbedding, TimestepEmbedding
from .layers import group_count, zero_init_


@dataclass(frozen=True)
class UNetPlan:
    """Resolution ladder of a :class:`UNet`.

    ``sizes[i]`` is the (H, W) of level ``i`` (after patchify), ``channels[i]`` its
    feature channels, ``attention[i]`` whether it has attention blocks;
    ``padded`` is the image size after padding to a multiple of ``patch_size``.
    """

    image_shape: tuple[int, int, int]
    patch_size: int
    padded: tuple[int, int]
    sizes: tuple[tuple[int, int], ...]
    channels: tuple[int, ...]
    attention: tuple[bool, ...]

    @property
    def n_levels(self) -> int:
        return len(self.sizes)


def default_level_count(size: tuple[int, int], *, min_size: int = 8) -> int:
    """Levels that halve (ceil) a feature map of ``size`` until its smaller side is at most
    ``min_size``, with at least two levels when the smaller side is >= 8:
    8 -> [8, 4], 14 -> [14, 7], 28 -> [28, 14, 7], 32 -> [32, 16, 8], 64 -> [64, 32, 16, 8], 7 -> [7]."""
    h, w = size
    levels = 1
    while min(h, w) > min_size or (levels == 1 and min(h, w) >= 8):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        levels += 1
    return levels


def unet_plan(
    image_shape: Sequence[int],
    width: int = 64,
    *,
    channel_mults: Sequence[int] | None = None,
    patch_size: int = 1,
    attention_size: int = 8,
) -> UNetPlan:
    """Plan a U-Net for images of shape (C, H, W).

    ``channel_mults`` (one per level) default to ``(1, 2, 2, ...)`` with
    :func:`default_level_count` levels. Attention runs at every level whose larger side
    is at most ``attention_size`` (0 = only in the middle block).
    """
    if len(image_shape) != 3 or min(int(s) for s in image_shape) < 1:
        raise GenlabError(f"image_shape={tuple(image_shape)} must be (C, H, W) with positive sizes")
    if int(width) < 1:
        raise GenlabError(f"width={width} must be >= 1")
    if int(patch_size) < 1:
        raise GenlabError(f"patch_size={patch_size} must be >= 1")
    c, h, w = (int(s) for s in image_shape)
    p = int(patch_size)
    padded = (math.ceil(h / p) * p, math.ceil(w / p) * p)
    size = (padded[0] // p, padded[1] // p)
    if channel_mults is None:
        n_levels = default_level_count(size)
        channel_mults = (1,) + (2,) * (n_levels - 1)
    mults = tuple(int(m) for m in channel_mults)
    if not mults or min(mults) < 1:
        raise GenlabError(f"channel_mults={tuple(channel_mults)} must be positive integers, one per level")
    sizes = [size]
    for _ in mults[1:]:
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    channels = tuple(int(width) * m for m in mults)
    attention = tuple(max(s) <= int(attention_size) for s in sizes)
    return UNetPlan((c, h, w), p, padded, tuple(sizes), channels, attention)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels), channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> GroupNorm * (1 + scale) + shift -> SiLU -> dropout -> conv,
    plus a (1x1-projected) skip; (scale, shift) come from the embedding (FiLM)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = zero_init_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, then (with ``context_dim``)
    cross-attention to a token sequence; each a residual branch with a zero-initialised
    output projection. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, *, head_dim: int = 32, context_dim: int | None = None) -> None:
        super().__init__()
        self.n_heads = max(1, channels // max(1, head_dim))
        if channels % self.n_heads:
            self.n_heads = 1
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = zero_init_(nn.Conv1d(channels, channels, 1))
        self.context_dim = context_dim
        if context_dim is not None:
            self.cross_norm = _norm(channels)
            self.cross_q = nn.Conv1d(channels, channels, 1)
            self.cross_kv = nn.Linear(int(context_dim), 2 * channels)
            self.cross_out = zero_init_(nn.Conv1d(channels, channels, 1))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> (B, heads, N, C / heads)."""
        b, c, n = t.shape
        return t.reshape(b, self.n_heads, c // self.n_heads, n).transpose(2, 3)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        q, k, v = self.qkv(self.norm(x).reshape(b, c, h * w)).chunk(3, dim=1)
        attended = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        flat = flat + self.out(attended.transpose(2, 3).reshape(b, c, h * w))
        if self.context_dim is not None and context is not None:
            q = self.cross_q(self.cross_norm(flat.reshape(b, c, h, w)).reshape(b, c, h * w))
            k, v = self.cross_kv(context).transpose(1, 2).chunk(2, dim=1)  # (B, C, L) each
            mask = None if context_mask is None else context_mask[:, None, None, :]
            attended = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), attn_mask=mask)
            flat = flat + self.cross_out(attended.transpose(2, 3).reshape(b, c, h * w))
        return flat.reshape(b, c, h, w)


class _Level(nn.Module):
    def __init__(self, blocks: list[ResBlock], attns: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)


class UNet(nn.Module):
    """Noise-prediction network: ``forward(x, noise_level, ...)`` -> (B, out_channels, H, W).

    Parameters
    ----------
    image_shape : (C, H, W)
        Shape of the inputs (any H, W >= 1; odd sizes are fine).
    out_channels : int or None
        Output channels (default C).
    width : int
        Channels at the first level; level i has ``width * channel_mults[i]``.
    channel_mults : sequence of int or None
        One multiplier per level (None: ``(1, 2, 2, ...)`` sized by :func:`default_level_count`).
    n_res_blocks : int
        Residual blocks per level on the way down (the way up has one more, as in DDPM).
    attention_size : int
        Self-attention at levels whose larger side is at most this (the middle block always has it).
    head_dim : int
        Channels per attention head.
    dropout : float
        Dropout inside residual blocks.
    patch_size : int
        Space-to-depth factor of the input (1 = none); see the module docstring.
    n_classes : int or None
        Class-conditional: an embedding table with ``n_classes + 1`` rows (the last is "no label").
    cond_dim : int or None
        Size of an optional conditioning vector, projected and added to the embedding (FiLM).
    context_dim : int or None
        Size of the tokens of an optional conditioning sequence, read by cross-attention
        in every attention block.
    noise_scale : float
        The noise level input is multiplied by this before the sinusoidal features
        (1000 for a level in [0, 1]).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        out_channels: int | None = None,
        width: int = 64,
        channel_mults: Sequence[int] | None = None,
        n_res_blocks: int = 1,
        attention_size: int = 8,
        head_dim: int = 32,
        dropout: float = 0.0,
        patch_size: int = 1,
        n_classes: int | None = None,
        cond_dim: int | None = None,
        context_dim: int | None = None,
        noise_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if int(n_res_blocks) < 1:
            raise GenlabError(f"n_res_blocks={n_res_blocks} must be >= 1")
        self.plan = unet_plan(
            image_shape, width, channel_mults=channel_mults, patch_size=patch_size, attention_size=attention_size
        )
        c, _, _ = self.plan.image_shape
        p = self.plan.patch_size
        self.out_channels = int(out_channels) if out_channels is not None else c
        ch = self.plan.channels
        emb_dim = 4 * int(width)
        self.time_embedding = TimestepEmbedding(emb_dim, frequency_dim=max(32, int(width)), scale=float(noise_scale))
        self.n_classes = None if n_classes is None else int(n_classes)
        if self.n_classes is not None:
            if self.n_classes < 1:
                raise GenlabError(f"n_classes={n_classes} must be >= 1")
            self.label_embedding = LabelEmbedding(self.n_classes, emb_dim)  # row n_classes = "no label"
        self.cond_dim = None if cond_dim is None else int(cond_dim)
        if self.cond_dim is not None:
            self.cond_proj = nn.Sequential(nn.Linear(self.cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            self.null_cond = nn.Parameter(torch.zeros(self.cond_dim))
        self.context_dim = None if context_dim is None else int(context_dim)
        if self.context_dim is not None:
            self.null_context = nn.Parameter(torch.zeros(1, self.context_dim))

        def attention(channels: int) -> AttentionBlock:
            return AttentionBlock(channels, head_dim=head_dim, context_dim=self.context_dim)

        self.stem = nn.Conv2d(c * p * p, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_channels = [ch[0]]
        current = ch[0]
        for i, out in enumerate(ch):
            blocks, attns = [], []
            for _ in range(int(n_res_blocks)):
                blocks.append(ResBlock(current, out, emb_dim, dropout))
                attns.append(attention(out) if self.plan.attention[i] else nn.Identity())
                current = out
                skip_channels.append(current)
            self.down.append(_Level(blocks, attns))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skip_channels.append(current)
        self.mid1 = ResBlock(current, current, emb_dim, dropout)
        self.mid_attn = attention(current)
        self.mid2 = ResBlock(current, current, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            blocks, attns = [], []
            for _ in range(int(n_res_blocks) + 1):
                blocks.append(ResBlock(current + skip_channels.pop(), ch[i], emb_dim, dropout))
                attns.append(attention(ch[i]) if self.plan.attention[i] else nn.Identity())
                current = ch[i]
            self.up.append(_Level(blocks, attns))
            if i > 0:
                self.upsample.append(nn.Conv2d(current, current, 3, padding=1))
        self.out_norm = _norm(current)
        self.out_conv = zero_init_(nn.Conv2d(current, self.out_channels * p * p, 3, padding=1))

    def embed(
        self,
        noise_level: torch.Tensor,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The (B, 4 * width) embedding of noise level + label + conditioning vector."""
        emb = self.time_embedding(noise_level)
        b = emb.shape[0]
        if self.n_classes is not None:
            emb = emb + self.label_embedding(labels, drop=drop, batch_size=b)
        elif labels is not None:
            raise GenlabError("this U-Net has no label embedding (n_classes=None); pass labels=None")
        if self.cond_dim is not None:
            if cond is None:
                cond = self.null_cond.expand(b, -1)
            elif drop is not None:
                cond = torch.where(drop[:, None], self.null_cond.expand(b, -1), cond)
            emb = emb + self.cond_proj(cond)
        elif cond is not None:
            raise GenlabError("this U-Net takes no conditioning vector (cond_dim=None); pass cond=None")
        return emb

    def forward(
        self,
        x: torch.Tensor,
        noise_level: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, C, H, W); noise_level: (B,) float (e.g. in [0, 1]) -> (B, out_channels, H, W).

        ``drop`` (B,) bool replaces the label, vector and sequence of those rows by the
        learned null (classifier-free guidance trains and samples with it).
        """
        b, c, h, w = x.shape
        if (c, h, w) != self.plan.image_shape:
            raise GenlabError(f"UNet: input of shape {(c, h, w)}, built for {self.plan.image_shape}")
        if noise_level.ndim == 0:
            noise_level = noise_level.expand(b)
        emb = self.embed(noise_level, labels, cond, drop)
        if self.context_dim is not None:
            if context is None:
                context = self.null_context.expand(b, 1, -1)
                context_mask = None
            elif drop is not None:
                null = self.null_context.expand(b, context.shape[1], -1)
                context = torch.where(drop[:, None, None], null, context)
                if context_mask is not None:
                    # a dropped row attends to its null tokens everywhere
                    context_mask = context_mask | drop[:, None]
        elif context is not None:
            raise GenlabError("this U-Net takes no token sequence (context_dim=None); pass context=None")
        p = self.plan.patch_size
        if p > 1:
            ph, pw = self.plan.padded
            x = F.pad(x, (0, pw - w, 0, ph - h))
            x = F.pixel_unshuffle(x, p)
        hidden = self.stem(x)
        skips = [hidden]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns):
                hidden = block(hidden, emb)
                hidden = attn(hidden, context, context_mask) if isinstance(attn, AttentionBlock) else hidden
                skips.append(hidden)
            if i < len(self.downsample):
                hidden = self.downsample[i](hidden)
                skips.append(hidden)
        hidden = self.mid1(hidden, emb)
        hidden = self.mid_attn(hidden, context, context_mask)
        hidden = self.mid2(hidden, emb)
        for j, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns):
                hidden = block(torch.cat([hidden, skips.pop()], dim=1), emb)
                hidden = attn(hidden, context, context_mask) if isinstance(attn, AttentionBlock) else hidden
            if j < len(self.upsample):
                target = skips[-1].shape[-2:]
                hidden = self.upsample[j](F.interpolate(hidden, size=target, mode="nearest"))
        out = self.out_conv(F.silu(self.out_norm(hidden)))
        if p > 1:
            out = F.pixel_shuffle(out, p)[:, :, :h, :w]
        return out
