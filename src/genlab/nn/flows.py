"""Invertible layers and the multiscale Glow/RealNVP flow.

Every layer maps ``x -> (y, logdet)`` with ``forward`` and back with ``inverse(y)``;
``logdet`` is ``log |det dy/dx|`` per example, shape (B,), in float32 (float64 for float64
inputs) whatever the autocast state: the transforms and their log-determinants run with
autocast disabled, only the coupling networks (plain convolutions) may run in bf16.

Layers (images (B, C, H, W)):

* :class:`Squeeze` — space-to-depth 2x2, (C, H, W) -> (4C, H/2, W/2), volume preserving.
* :class:`ActNorm` — ``y = (x + b) * exp(s)`` per channel (or per dimension), initialised
  from the first batch it sees in training mode so that ``y`` has zero mean and unit
  variance (Kingma & Dhariwal 2018); the ``initialized`` buffer is saved with the weights,
  so a loaded or resumed network is never initialised again.
* :class:`InvConv1x1` — invertible 1x1 convolution, LU-parametrised
  ``W = P L (U + diag(sign(s) exp(log|s|)))`` so ``log|det| = H W Σ log|s|``.
* :class:`Coupling` — affine (``y_b = x_b exp(log s) + t``, ``log s = B tanh(raw / B)``
  bounded in (-B, B)) or rational-quadratic spline (Durkan et al. 2019) coupling with a
  channel mask (half the channels condition the other half) or a checkerboard mask
  (RealNVP); the conditioning net is a small conv ResNet whose last layer starts at zero,
  so every coupling starts as the identity.
* :class:`SplitPrior` — the Gaussian prior of factored-out channels, its mean and
  log-scale predicted from the kept channels (and a label embedding), both zero at start.

:class:`MultiscaleFlow` assembles them: a per-dimension input ActNorm, then per level
(optional checkerboard couplings), squeeze, ``depth`` x (ActNorm, 1x1 conv, channel
coupling), split; a learned top prior. It maps an image to *standardised* latents
``eps = (z - mu) / sigma`` of every level, so ``log p(x) = Σ log N(eps; 0, I) + logdet``,
``encode``/``decode`` are exact inverses, and sampling at temperature T draws eps ~ N(0, T² I).
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)
COUPLINGS = ("affine", "spline")
MASKS = ("channel", "checkerboard")


def _ld_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 inputs keep float64; everything else is accumulated in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def no_autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Disable autocast on ``x``'s device (the transforms and log-dets stay in full precision)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def standard_normal_log_prob(eps: torch.Tensor) -> torch.Tensor:
    """Σ log N(eps; 0, 1) over all but the first dim, (B,), nats."""
    return -0.5 * (eps.pow(2) + LOG_2PI).flatten(1).sum(1)


# ---------------------------------------------------------------------- squeeze
class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block becomes 4 channels (logdet 0)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b, dtype=_ld_dtype(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        return y.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


# ---------------------------------------------------------------------- actnorm
class ActNorm(nn.Module):
    """``y = (x + bias) * exp(log_scale)``; per channel (``per_dimension=False``, Glow) or
    per (C, H, W) position (the input layer: a diagonal Gaussian on its own).

    Data-dependent initialisation: the first forward pass in training mode (or
    :meth:`initialize`) sets ``bias = -mean`` and ``log_scale = -log std`` of its input, once;
    the ``initialized`` buffer travels with the state dict.
    """

    def __init__(self, shape: Sequence[int], per_dimension: bool = False, eps: float = 1e-12) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        pshape = (1, c, h, w) if per_dimension else (1, c, 1, 1)
        self.per_dimension = bool(per_dimension)
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(pshape))
        self.log_scale = nn.Parameter(torch.zeros(pshape))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self._checked = False  # caches "initialized" so training steps do not sync with the device

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias/scale so that this batch comes out with zero mean and unit variance."""
        dims = (0,) if self.per_dimension else (0, 2, 3)
        x64 = x.detach().to(torch.float64)
        mean = x64.mean(dims, keepdim=True)
        var = (x64 - mean).pow(2).mean(dims, keepdim=True)
        self.bias.copy_(-mean.to(self.bias.dtype))
        self.log_scale.copy_(
            (-0.5 * torch.log(var.clamp_min(self.eps))).to(self.log_scale.dtype)
        )  # exact ML scale unless degenerate
        self.initialized.fill_(1)

    def _logdet(self, x: torch.Tensor) -> torch.Tensor:
        ls = self.log_scale.to(_ld_dtype(x))
        per = ls.sum() if self.per_dimension else ls.sum() * (x.shape[2] * x.shape[3])
        return per.expand(x.shape[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self._checked:
            if not bool(self.initialized):
                self.initialize(x)
            self._checked = True
        with no_autocast(x):
            y = (x + self.bias.to(x.dtype)) * torch.exp(self.log_scale.to(x.dtype))
            return y, self._logdet(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        with no_autocast(y):
            return y * torch.exp(-self.log_scale.to(y.dtype)) - self.bias.to(y.dtype)


# ---------------------------------------------------------------------- 1x1 convolution
class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with the LU parametrisation of Glow; starts at a random rotation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = int(channels)
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p.to(torch.float32))
        self.register_buffer("sign_s", torch.sign(s).to(torch.float32))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower.to(torch.float32))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(torch.float32))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(torch.float32))

    def weight(self, dtype: torch.dtype) -> torch.Tensor:
        """W (C, C) in ``dtype``."""
        c = self.log_s.shape[0]
        eye = torch.eye(c, dtype=dtype, device=self.log_s.device)
        lower = self.lower.to(dtype) * self.lower_mask.to(dtype) + eye
        upper = self.upper.to(dtype) * self.lower_mask.T.to(dtype) + torch.diag(
            self.sign_s.to(dtype) * torch.exp(self.log_s.to(dtype))
        )
        return self.perm.to(dtype) @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(x):
            w = self.weight(x.dtype)
            y = torch.einsum("ij,bjhw->bihw", w, x)
            logdet = self.log_s.to(_ld_dtype(x)).sum() * (x.shape[2] * x.shape[3])
            return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        with no_autocast(y):
            w_inv = torch.linalg.inv(self.weight(torch.float64)).to(y.dtype)  # inverted in float64: exact round trips
            return torch.einsum("ij,bjhw->bihw", w_inv, y)


# ---------------------------------------------------------------------- conditioning network
class ResNetConditioner(nn.Module):
    """conv3x3 -> n_blocks residual (3x3, 1x1) blocks -> zero-initialised conv3x3."""

    def __init__(self, in_channels: int, out_channels: int, width: int, n_blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1))
            for _ in range(int(n_blocks))
        )
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the coupling starts as the identity
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(F.relu(h))


# ---------------------------------------------------------------------- rational-quadratic spline
def _knots(raw: torch.Tensor, bound: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes (..., K) summing to 2*bound (each >= min_size of it) and knot positions (..., K+1)."""
    k = raw.shape[-1]
    size = min_size + (1 - min_size * k) * torch.softmax(raw, dim=-1)
    cum = F.pad(torch.cumsum(size, dim=-1), (1, 0))
    cum = 2 * bound * cum - bound
    cum = torch.cat(
        [torch.full_like(cum[..., :1], -bound), cum[..., 1:-1], torch.full_like(cum[..., :1], bound)], dim=-1
    )
    return cum[..., 1:] - cum[..., :-1], cum


#: the inner-derivative shift that makes a raw 0 give derivative 1 (identity at initialisation)
MIN_DERIVATIVE = 1e-3
_DERIV_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def rational_quadratic_spline(
    x: torch.Tensor,
    raw_widths: torch.Tensor,
    raw_heights: torch.Tensor,
    raw_derivatives: torch.Tensor,
    *,
    inverse: bool = False,
    bound: float = 4.0,
    min_bin: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monotone rational-quadratic spline on [-bound, bound], identity outside (Durkan et al. 2019).

    ``x`` (...,), raw widths/heights (..., K), raw inner derivatives (..., K-1) (the end
    derivatives are 1, matching the identity tails). Returns (y, log |dy/dx|) elementwise;
    with ``inverse=True`` ``x`` is an output value and the inverse map and ``log |dx/dy|``
    are returned. All-zero raw parameters give the identity.
    """
    widths, cw = _knots(raw_widths, bound, min_bin)
    heights, ch = _knots(raw_heights, bound, min_bin)
    inner = MIN_DERIVATIVE + F.softplus(raw_derivatives + _DERIV_SHIFT)
    ones = torch.ones_like(inner[..., :1])
    derivs = torch.cat([ones, inner, ones], dim=-1)  # (..., K+1)

    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    knots = ch if inverse else cw
    idx = (xc[..., None] >= knots[..., 1:-1]).sum(-1, keepdim=True)  # bin index (..., 1) in 0..K-1

    def take(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, idx)[..., 0]

    x_k, w_k, y_k, h_k = take(cw), take(widths), take(ch), take(heights)
    d_k, d_k1 = take(derivs), derivs[..., 1:].gather(-1, idx)[..., 0]
    s_k = h_k / w_k
    if not inverse:
        xi = (xc - x_k) / w_k
    else:
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * (d_k1 + d_k - 2 * s_k)
        b = h_k * d_k - dy * (d_k1 + d_k - 2 * s_k)
        c = -s_k * dy
        disc = (b.pow(2) - 4 * a * c).clamp_min(0)
        xi = (2 * c) / (-b - torch.sqrt(disc))  # the numerically stable root
    xi = xi.clamp(0, 1)
    one_m = 1 - xi
    den = s_k + (d_k1 + d_k - 2 * s_k) * xi * one_m
    log_grad = (
        2 * torch.log(s_k)
        + torch.log(d_k1 * xi.pow(2) + 2 * s_k * xi * one_m + d_k * one_m.pow(2))
        - 2 * torch.log(den)
    )
    if not inverse:
        out = y_k + h_k * (s_k * xi.pow(2) + d_k * xi * one_m) / den
        return torch.where(inside, out, x), torch.where(inside, log_grad, torch.zeros_like(log_grad))
    out = x_k + xi * w_k
    return torch.where(inside, out, x), torch.where(inside, -log_grad, torch.zeros_like(log_grad))


# ---------------------------------------------------------------------- coupling
def checkerboard(h: int, w: int, parity: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 1, H, W) mask, 1 where (i + j + parity) is even: the pixels that condition."""
    ii, jj = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return (((ii + jj + parity) % 2) == 0).to(dtype)[None, None]


class Coupling(nn.Module):
    """Affine or rational-quadratic-spline coupling with a channel or checkerboard mask.

    ``mask="channel"``: the first ``C // 2`` channels condition the rest (``parity=1``
    swaps the halves). ``mask="checkerboard"``: the pixels with even (i + j + parity)
    condition the others; the net sees them (others zeroed) plus the mask as a channel.
    """

    def __init__(
        self,
        channels: int,
        coupling: str = "affine",
        mask: str = "channel",
        parity: int = 0,
        width: int = 64,
        n_blocks: int = 1,
        n_bins: int = 8,
        tail_bound: float = 4.0,
        scale_bound: float = 3.0,
    ) -> None:
        super().__init__()
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling={coupling!r}: use one of {COUPLINGS}")
        if mask not in MASKS:
            raise ValueError(f"mask={mask!r}: use one of {MASKS}")
        c = int(channels)
        if mask == "channel" and c < 2:
            raise ValueError("a channel-mask coupling needs at least 2 channels")
        self.coupling, self.mask, self.parity = coupling, mask, int(parity) % 2
        self.n_bins, self.tail_bound, self.scale_bound = int(n_bins), float(tail_bound), float(scale_bound)
        if mask == "channel":
            c_cond = c // 2 if self.parity == 0 else c - c // 2
            self.c_cond, self.c_out = c_cond, c - c_cond
            net_in = c_cond
        else:
            self.c_cond, self.c_out = c, c
            net_in = c + 1
        per = 2 if coupling == "affine" else 3 * self.n_bins - 1
        self.per = per
        self.net = ResNetConditioner(net_in, per * self.c_out, int(width), int(n_blocks))

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.parity == 0:
            return x[:, : self.c_cond], x[:, self.c_cond :]
        return x[:, self.c_out :], x[:, : self.c_out]

    def _join(self, cond: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([cond, out], 1) if self.parity == 0 else torch.cat([out, cond], 1)

    def _params(self, net_in: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Network output as (B, C_out, per, H, W) in the transform's dtype."""
        raw = self.net(net_in).to(like.dtype)
        b, _, h, w = raw.shape
        return raw.reshape(b, self.c_out, self.per, h, w)

    def _transform(self, xb: torch.Tensor, p: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise transform of xb (B, C_out, H, W) and its elementwise log-grad."""
        if self.coupling == "affine":
            log_s = self.scale_bound * torch.tanh(p[:, :, 0] / self.scale_bound)
            t = p[:, :, 1]
            if inverse:
                return (xb - t) * torch.exp(-log_s), -log_s
            return xb * torch.exp(log_s) + t, log_s
        k = self.n_bins
        # the spline runs in float64: its inverse (a quadratic root per bin) loses whole
        # pixels in float32 where the bins are narrow; the cost is elementwise only
        p = p.movedim(2, -1).double()  # (B, C, H, W, per)
        y, lg = rational_quadratic_spline(
            xb.double(), p[..., :k], p[..., k : 2 * k], p[..., 2 * k :], inverse=inverse, bound=self.tail_bound
        )
        return y.to(xb.dtype), lg

    def _couple(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ld_dtype = _ld_dtype(x)
        if self.mask == "channel":
            xa, xb = self._split(x)
            p = self._params(xa, x)
            with no_autocast(x):
                yb, lg = self._transform(xb, p, inverse)
                return self._join(xa, yb), lg.to(ld_dtype).flatten(1).sum(1)
        m = checkerboard(x.shape[2], x.shape[3], self.parity, x.device, x.dtype)
        p = self._params(torch.cat([x * m, m.expand(x.shape[0], 1, -1, -1)], 1), x)
        with no_autocast(x):
            y, lg = self._transform(x, p, inverse)
            y = m * x + (1 - m) * y
            return y, ((1 - m) * lg).to(ld_dtype).flatten(1).sum(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._couple(x, inverse=False)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self._couple(y, inverse=True)[0]


# ---------------------------------------------------------------------- priors
class GaussianPrior(nn.Module):
    """Diagonal Gaussian prior of a latent (C, H, W): mean and log-scale from a conditioning
    tensor ``h`` through a zero-initialised conv (split priors) or learned free tensors (top
    prior), plus a zero-initialised per-channel label embedding when ``n_classes > 0``.

    ``standardize(z) -> (eps, logdet)`` with ``eps = (z - mu) / sigma`` and logdet
    ``-Σ log sigma``; ``unstandardize(eps) -> z``. log-scales are bounded in (-B, B) by B tanh(·/B).
    """

    def __init__(
        self,
        shape: Sequence[int],
        cond_channels: int = 0,
        n_classes: int = 0,
        width: int = 0,
        log_scale_bound: float = 6.0,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        self.channels, self.bound = c, float(log_scale_bound)
        self.n_classes = int(n_classes)
        if cond_channels:
            self.conv = nn.Conv2d(int(cond_channels), 2 * c, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)
            self.free = None
        else:
            self.conv = None
            self.free = nn.Parameter(torch.zeros(1, 2 * c, h, w))
        self.embed = nn.Linear(self.n_classes, 2 * c, bias=False) if self.n_classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def params(
        self, h: torch.Tensor | None, onehot: torch.Tensor | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_scale), each broadcastable to ``like`` (B, C, H, W), in its dtype."""
        if self.conv is not None:
            raw = self.conv(h).to(like.dtype)
        else:
            raw = self.free.to(like.dtype).expand(like.shape[0], -1, -1, -1)
        if self.embed is not None:
            if onehot is None:
                raise ValueError("this prior is class-conditional: pass one-hot labels")
            raw = raw + self.embed(onehot.to(self.embed.weight.dtype)).to(like.dtype)[:, :, None, None]
        mean, log_scale = raw[:, : self.channels], raw[:, self.channels :]
        return mean, self.bound * torch.tanh(log_scale / self.bound)

    def standardize(
        self, z: torch.Tensor, h: torch.Tensor | None, onehot: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.params(h, onehot, z)
        with no_autocast(z):
            eps = (z - mean) * torch.exp(-log_scale)
            return eps, -log_scale.to(_ld_dtype(z)).flatten(1).sum(1)

    def unstandardize(self, eps: torch.Tensor, h: torch.Tensor | None, onehot: torch.Tensor | None) -> torch.Tensor:
        mean, log_scale = self.params(h, onehot, eps)
        with no_autocast(eps):
            return mean + eps * torch.exp(log_scale)


class Split(nn.Module):
    """Factor out the last ``C - C // 2`` channels: ``x -> (h, eps)`` with eps the standardised
    factored-out half under a prior conditioned on the kept half ``h`` (Glow's split)."""

    def __init__(self, shape: Sequence[int], n_classes: int = 0) -> None:
        super().__init__()
        c, h, w = (int(s) for s in shape)
        self.keep = c // 2
        self.prior = GaussianPrior((c - self.keep, h, w), cond_channels=self.keep, n_classes=n_classes)

    def forward(
        self, x: torch.Tensor, onehot: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h (B, keep, H, W), eps (B, C - keep, H, W), logdet (B,))."""
        h, z = x[:, : self.keep], x[:, self.keep :]
        eps, logdet = self.prior.standardize(z, h, onehot)
        return h, eps, logdet

    def inverse(self, h: torch.Tensor, eps: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([h, self.prior.unstandardize(eps, h, onehot)], 1)


# ---------------------------------------------------------------------- the multiscale flow
class MultiscaleFlow(nn.Module):
    """Glow/RealNVP multiscale flow over images (C, H, W); H and W divisible by 2^n_levels.

    Per level: with ``mask="checkerboard"`` first ``depth`` x (ActNorm, checkerboard
    coupling of alternating parity) at the level's resolution (RealNVP); then squeeze and
    ``depth`` x (ActNorm, 1x1 conv, channel coupling); then (all but the last level) a split
    with a learned prior. The top latent gets a learned (class-conditional) prior.
    A per-dimension ActNorm comes first. ``depth=0`` leaves the input ActNorm and priors: a
    diagonal Gaussian.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        n_levels: int = 2,
        depth: int = 4,
        width: int = 64,
        n_blocks: int = 1,
        coupling: str = "affine",
        mask: str = "channel",
        n_bins: int = 8,
        tail_bound: float = 4.0,
        n_classes: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if h % (2**n_levels) or w % (2**n_levels):
            raise ValueError(f"image size {h}x{w} is not divisible by 2^{n_levels} (n_levels={n_levels})")
        self.image_shape = (c, h, w)
        self.n_classes = int(n_classes)
        self.input_norm = ActNorm((c, h, w), per_dimension=True)
        kw = dict(coupling=coupling, width=width, n_blocks=n_blocks, n_bins=n_bins, tail_bound=tail_bound)
        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.latent_shapes: list[tuple[int, int, int]] = []
        for level in range(int(n_levels)):
            steps: list[nn.Module] = []
            if mask == "checkerboard":
                for k in range(depth):
                    steps += [ActNorm((c, h, w)), Coupling(c, mask="checkerboard", parity=k % 2, **kw)]
            steps.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for k in range(depth):
                steps += [ActNorm((c, h, w)), InvConv1x1(c), Coupling(c, mask="channel", parity=k % 2, **kw)]
            self.levels.append(nn.ModuleList(steps))
            if level < n_levels - 1:
                split = Split((c, h, w), n_classes=self.n_classes)
                self.splits.append(split)
                self.latent_shapes.append((c - split.keep, h, w))
                c = split.keep
        self.latent_shapes.append((c, h, w))
        self.top_prior = GaussianPrior((c, h, w), n_classes=self.n_classes)

    @property
    def n_dims(self) -> int:
        return int(math.prod(self.image_shape))

    # -- bottom-up: x -> standardised latents
    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x (B, C, H, W) -> ([eps per level (B, *latent_shapes[i])], logdet (B,))."""
        h, logdet = self.input_norm(x)
        eps_list = []
        for i, steps in enumerate(self.levels):
            for step in steps:
                h, ld = step(h)
                logdet = logdet + ld
            if i < len(self.splits):
                h, eps, ld = self.splits[i](h, onehot)
                eps_list.append(eps)
                logdet = logdet + ld
        eps, ld = self.top_prior.standardize(h, None, onehot)
        eps_list.append(eps)
        return eps_list, logdet + ld

    def log_prob(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) (B,) in nats, float32 (float64 for float64 inputs)."""
        eps_list, logdet = self(x, onehot)
        with no_autocast(x):
            return logdet + sum(standard_normal_log_prob(e.to(logdet.dtype)) for e in eps_list)

    # -- top-down: standardised latents -> x
    def inverse(self, eps_list: Sequence[torch.Tensor], onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = self.top_prior.unstandardize(eps_list[-1], None, onehot)
        for i in reversed(range(len(self.levels))):
            if i < len(self.splits):
                h = self.splits[i].inverse(h, eps_list[i], onehot)
            for step in reversed(self.levels[i]):
                h = step.inverse(h)
        return self.input_norm.inverse(h)

    def flatten(self, eps_list: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate the latents of every level: (B, D)."""
        return torch.cat([e.flatten(1) for e in eps_list], 1)

    def unflatten(self, eps: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of :meth:`flatten`."""
        out, start = [], 0
        for shape in self.latent_shapes:
            n = int(math.prod(shape))
            out.append(eps[:, start : start + n].reshape(eps.shape[0], *shape))
            start += n
        return out

    def initialize(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> None:
        """Data-dependent initialisation of every ActNorm that is not initialised yet, in order."""
        was = self.training
        self.train()
        with torch.no_grad():
            self(x, onehot)
        self.train(was)


__all__ = [
    "COUPLINGS",
    "MASKS",
    "ActNorm",
    "Coupling",
    "GaussianPrior",
    "InvConv1x1",
    "MultiscaleFlow",
    "ResNetConditioner",
    "Split",
    "Squeeze",
    "checkerboard",
    "rational_quadratic_spline",
    "standard_normal_log_prob",
]
