"""The data space of a diffusion model: a monotone piecewise-linear map between the unit
cube of dequantised pixels and [-1, 1], one linear piece per uint8 level. Shared by
``diffusion``, ``flow-matching``, ``flow`` (its fixed first layer, halved to [-0.5, 0.5])
and, as an option, ``gan`` (:mod:`genlab.models._data_space`).

Why (issue #14): with the plain map ``x = 2u - 1`` every level is a cell 2/256 wide, and
the background of digit images (level 0, half or more of all pixels) sits on the lower
edge of the data range. The network's own error around it (a few levels wide) cannot go
below -1 (it is clipped) but does go above, so a fifth of the pixels came out as faint
values 1-7 — a grey haze that real images do not have.

``"histogram"``: each level ``v`` gets a cell whose width mixes the uniform width with the
level's share ``p_v`` of the training pixels,

    width_v = 2 * ((1 - mix) / 256 + mix * p_v),        sum_v width_v = 2,

so the background level owns a wide cell (digits: about half of [-1, 1]) inside which the
network's error stays, and levels the data never uses shrink to half their width. Samples
are decoded with the same cell edges (``to_unit`` then ``floor(256 u)``), so a value stays
in the level whose cell it falls in.

The likelihood stays on genlab's convention (:mod:`genlab.likelihood`): pixels are still
dequantised uniformly in ``u``, and since the map is invertible and linear on each cell,
``log p(u) = log p(x) + sum_pixels log |dx/du|`` with ``dx/du = 256 * width_v`` on level
``v``'s cell (:meth:`PixelSpace.log_det`) — the density model simply works in a
re-parametrised space, and bits/dim remain exact in the same sense as before. The
linear map (``width_v = 2/256``, ``dx/du = 2``) is the special case ``mix = 0``.

The map is fitted state (the training split's histogram, like any learned parameter): it
acts as a fixed first flow layer that already encodes each pixel's marginal level
distribution, which is why held-out bits/dim drop sharply (digits: 6.1 -> 2.9 at mix 0.5;
even a nearly untrained network scores 4.3 instead of 8.6). The bound is as valid as
before; compare it with other families knowing that part of the gain is this layer.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError

DATA_SPACES = ("histogram", "linear")
#: default weight of the training histogram in the cell widths (diffusion, flow matching;
#: flows and GANs set their own). Digits, quick diffusion, 1,500 steps, DPM-Solver++ 20
#: (held-out: 49.0 % zero, 0.0 % faint): linear 21.9 % zero / 19.8 % faint / FD 3.91 / 6.11
#: bits/dim; 0.5: 47.8 % / 1.2 % / 3.89 / 2.91; 0.9: 49.8 % / 0.2 % / 3.40 / 2.33 (flow
#: matching: 0.5 FD 3.91, 0.9 3.78). On mnist10k 0.9 is not better across the board: the
#: label-conditional diffusion quick preset gained (pixel TV 0.062 -> 0.031, FD 22.4 ->
#: 21.0), but unconditional diffusion and flow matching trained 15 CPU-minutes lost badly
#: (FD 37.7 -> 58.5 and 43.3 -> 61.3 at 100 network calls), so 0.5 stays the default.
HISTOGRAM_MIX = 0.5
LEVELS = 256


def linear_edges() -> torch.Tensor:
    """Cell edges (257,) float64 of the plain map ``x = 2u - 1``."""
    return torch.linspace(-1.0, 1.0, LEVELS + 1, dtype=torch.float64, device="cpu")  # never meta: fixed state


def histogram_edges(images: torch.Tensor, mix: float | None = None) -> torch.Tensor:
    """Cell edges (257,) float64 in [-1, 1] from uint8 training images: level ``v``'s width is
    ``2 ((1 - mix)/256 + mix p_v)`` with ``p_v`` its share of all pixels (module docstring).
    ``mix`` in [0, 1) (None = :data:`HISTOGRAM_MIX`); 0 gives :func:`linear_edges`."""
    mix = HISTOGRAM_MIX if mix is None else mix
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.numel() == 0:
        raise GenlabError("histogram_edges needs a non-empty torch.uint8 tensor of images")
    if not 0.0 <= float(mix) < 1.0:
        raise GenlabError(f"mix={mix} must be in [0, 1) (every level keeps a cell of positive width)")
    counts = torch.bincount(images.reshape(-1).to(torch.int64).cpu(), minlength=LEVELS).to(torch.float64)
    widths = (1.0 - mix) / LEVELS + mix * counts / counts.sum()
    edges = torch.cat([torch.zeros(1, dtype=torch.float64, device=widths.device), torch.cumsum(widths, 0)])
    return -1.0 + 2.0 * edges / edges[-1]  # exact ends despite rounding


class PixelSpace:
    """The piecewise-linear map u in [0, 1] <-> x in [-1, 1] with cell edges ``edges``
    ((257,), strictly increasing from -1 to 1). Tensors of any shape; float dtype kept."""

    def __init__(self, edges: torch.Tensor | None = None) -> None:
        edges = linear_edges() if edges is None else torch.as_tensor(edges, dtype=torch.float64, device="cpu").detach()
        if edges.shape != (LEVELS + 1,) or not bool(torch.isfinite(edges).all()):
            raise GenlabError(f"pixel space: expected {LEVELS + 1} finite cell edges, got shape {tuple(edges.shape)}")
        if not (bool((edges[1:] > edges[:-1]).all()) and edges[0] == -1.0 and edges[-1] == 1.0):
            raise GenlabError("pixel space: cell edges must increase strictly from -1 to 1")
        self.edges = edges
        self.widths = edges[1:] - edges[:-1]
        self.linear = bool(torch.allclose(edges, linear_edges(), rtol=0.0, atol=1e-12))

    def to_data(self, u: torch.Tensor) -> torch.Tensor:
        """Dequantised pixels ``u`` in [0, 1] -> model space [-1, 1]."""
        if self.linear:
            return 2.0 * u - 1.0
        s = 256.0 * u
        level = torch.clamp(torch.floor(s), 0, LEVELS - 1)
        edges, widths = self.edges.to(u.device, u.dtype), self.widths.to(u.device, u.dtype)
        idx = level.to(torch.int64)
        return edges[idx] + (s - level) * widths[idx]

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> [0, 1] (values outside [-1, 1] are clamped first); ``floor(256 u)``
        of the result is the level whose cell holds ``x``."""
        if self.linear:
            return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
        x = x.clamp(-1.0, 1.0)
        edges, widths = self.edges.to(x.device, x.dtype), self.widths.to(x.device, x.dtype)
        idx = torch.clamp(torch.searchsorted(edges, x.contiguous(), right=True) - 1, 0, LEVELS - 1)
        frac = ((x - edges[idx]) / widths[idx]).clamp(0.0, 1.0)
        return ((idx.to(x.dtype) + frac) / 256.0).clamp(0.0, 1.0)

    def log_det_unit(self, u: torch.Tensor) -> torch.Tensor:
        """``sum_pixels log |dx/du|`` (nats) of dequantised values ``u`` (B, ...) in [0, 1] -> (B,)
        in ``u``'s dtype and device; the level of a value is ``floor(256 u)`` (the same as
        :meth:`log_det` of the images it dequantises). Used where only ``u`` is at hand
        (a learned dequantiser's noise)."""
        if self.linear:
            return u.new_full((u.shape[0],), u[0].numel() * math.log(2.0))
        per_level = torch.log(256.0 * self.widths).to(u.device, u.dtype)
        level = torch.clamp(torch.floor(256.0 * u.detach()), 0, LEVELS - 1).to(torch.int64)
        return per_level[level.reshape(u.shape[0], -1)].sum(1)

    def log_det(self, images: torch.Tensor) -> torch.Tensor:
        """``sum_pixels log |dx/du|`` (nats) of each uint8 image (B, ...) -> (B,) float64 on the CPU:
        ``log(256 width_v)`` per pixel of level ``v`` (``log 2`` everywhere for the linear map)."""
        cell_centres = (images.reshape(images.shape[0], -1).to("cpu", torch.float64) + 0.5) / 256.0
        return self.log_det_unit(cell_centres)
