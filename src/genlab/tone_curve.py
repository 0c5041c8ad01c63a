"""The tone curve: how a neural model's continuous outputs become pixel levels.

A network outputs values ``u`` in [0, 1]; plain rounding (:func:`genlab.likelihood.quantize`,
level ``floor(256 u)``) gives the level whose cell holds ``u``. Networks trained for a few
minutes get the *marginal* of the pixel values wrong even when the strokes are right: a GAN
or a VAE paints the background as faint greys instead of exact 0, a diffusion model's ink
sits a few levels under MNIST's 252-254 peak and its overshoot piles up at 255. Issue #14
measured this as the total-variation distance between the pixel-value histograms of samples
and of held-out images: 0.07 for the GAN and 0.03-0.06 for diffusion, against 0.007 between
two draws of real images.

The fix here is histogram matching, the monotone map that carries one 1-D distribution onto
another (the 1-D optimal-transport map; Heeger & Bergen 1995 match pixel histograms the same
way in texture synthesis). After training, the model draws a calibration batch with plain
rounding switched off; per channel, the 255 thresholds are the quantiles of those output
values at the cumulative shares of the *training* images' levels 0..254, and a sample value
``u`` becomes level ``#{thresholds < u}``. So the map

* is fitted on training data only (held-out images never see it);
* is monotone in ``u``: darker stays darker within every image, only the levels' spacing
  changes, so shapes, strokes and the ranking of pixels are the network's own;
* is part of the sampler, not of the density: ``score_samples`` and bits/dim are those of the
  network, and ``tone_curve=False`` in ``sample`` gives the plain-rounded samples.

Ties: samplers that clip (diffusion's clipped denoised estimate, a flow's clamp to [0, 1])
put a few per cent of the values at exactly 0 or 1, a block that one threshold cannot split
(MNIST's top levels 253/254/255 would all come out as one). Both the calibration values and
the values to map get a random jitter of at most :data:`TIE_JITTER` — far below float32's
resolution, so distinct outputs keep their order — which spreads a tied block over the levels
its quantiles cover (the randomised probability-integral transform).

Shapes: thresholds are (C, 255) float64, one row per channel.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import GenlabError
from .likelihood import check_finite_outputs

LEVELS = 256
#: images the model draws after training to fit its tone curve
TONE_IMAGES = 256
#: at most this many output values per channel enter the quantiles (a fixed-stride subset beyond it)
MAX_VALUES_PER_CHANNEL = 4_000_000
#: values mapped per chunk by :func:`apply_tone_curve` (~8 MB of float64)
APPLY_CHUNK_VALUES = 1 << 20
#: width of the tie-breaking jitter (2**-40 ~ 9e-13; float32 resolution at 1 is 6e-8)
TIE_JITTER = 2.0**-40


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a fixed-seed one so that a call without it is reproducible."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _jittered(unit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """float64 CPU copy of ``unit`` plus uniform noise in [0, TIE_JITTER) drawn (on the CPU) from ``generator``."""
    values = unit.detach().to("cpu", torch.float64)
    return values + TIE_JITTER * torch.rand(values.shape, generator=generator, dtype=torch.float64)


def fit_tone_thresholds(
    unit: torch.Tensor, training_images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Thresholds (C, 255) float64 mapping output values to the training images' levels.

    ``unit``: model outputs in [0, 1] before rounding, (N, C, H, W) float.
    ``training_images``: uint8 (M, C, H, W), the images the model was fitted on.
    Row ``c`` holds the quantiles of channel ``c``'s output values at the cumulative shares
    of levels 0..254 in the training images, so mapping with :func:`apply_tone_curve` gives
    the calibration batch the training histogram. ``generator``: for the tie-breaking jitter."""
    if unit.ndim != 4 or training_images.ndim != 4 or unit.shape[1] != training_images.shape[1]:
        raise GenlabError(
            f"tone curve: outputs {tuple(unit.shape)} and training images {tuple(training_images.shape)} "
            "must both be (N, C, H, W) with the same channels"
        )
    if training_images.dtype != torch.uint8:
        raise GenlabError(f"tone curve: training images must be uint8, got {training_images.dtype}")
    check_finite_outputs(unit)
    channels = unit.shape[1]
    jittered = _jittered(unit, _default_generator(generator))
    rows = []
    for c in range(channels):
        values = jittered[:, c].reshape(-1).numpy()
        if values.size > MAX_VALUES_PER_CHANNEL:
            values = values[:: -(-values.size // MAX_VALUES_PER_CHANNEL)]
        counts = torch.bincount(training_images[:, c].reshape(-1).to(torch.int64).cpu(), minlength=LEVELS)
        shares = np.cumsum(counts.to(torch.float64).numpy())[:-1] / float(counts.sum())
        row = np.quantile(values, np.clip(shares, 0.0, 1.0))
        row[shares <= 0.0] = -1.0  # levels nothing falls below (an unused level 0): every output lies above
        rows.append(row)
    return torch.from_numpy(np.stack(rows)).to(torch.float64)


def apply_tone_curve(
    unit: torch.Tensor, thresholds: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Outputs ``unit`` (N, C, H, W) float in [0, 1] -> uint8 levels ``#{thresholds[c] < u}``
    (``u`` with the tie-breaking jitter drawn from ``generator``).

    ``thresholds``: (C, 255), non-decreasing along the last axis (from :func:`fit_tone_thresholds`)."""
    check_finite_outputs(unit)
    n, channels = unit.shape[0], unit.shape[1]
    if thresholds.shape != (channels, LEVELS - 1):
        raise GenlabError(f"tone curve: thresholds of shape {tuple(thresholds.shape)} for {channels}-channel images")
    sorted_rows = thresholds.to(torch.float64).contiguous()
    generator = _default_generator(generator)  # one stream over all chunks
    out = torch.empty(unit.shape, dtype=torch.uint8)
    # chunks of images bound the float64/int64 temporaries; the jitter is drawn in image
    # order, so the result does not depend on the chunk size
    chunk = max(1, APPLY_CHUNK_VALUES // max(1, unit[0].numel()))
    for start in range(0, n, chunk):
        part = unit[start : start + chunk]
        # (C, images*H*W) rows searched against each channel's thresholds
        values = _jittered(part, generator).transpose(0, 1).reshape(channels, -1).contiguous()
        levels = torch.searchsorted(sorted_rows, values, right=False).clamp(0, LEVELS - 1).to(torch.uint8)
        out[start : start + chunk] = levels.reshape(channels, part.shape[0], *unit.shape[2:]).transpose(0, 1)
    return out


def check_tone_thresholds(thresholds: object, channels: int) -> None:
    """Raise GenlabError unless ``thresholds`` is a finite (channels, 255) float tensor, non-decreasing per row."""
    if not isinstance(thresholds, torch.Tensor) or not thresholds.is_floating_point():
        raise GenlabError("fitted.tone_thresholds_: expected a floating-point tensor")
    if tuple(thresholds.shape) != (channels, LEVELS - 1):
        raise GenlabError(
            f"fitted.tone_thresholds_: shape {tuple(thresholds.shape)}, but {channels}-channel images need {(channels, LEVELS - 1)}"
        )
    if not bool(torch.isfinite(thresholds).all()) or bool((thresholds[:, 1:] < thresholds[:, :-1]).any()):
        raise GenlabError("fitted.tone_thresholds_: must be finite and non-decreasing along each row")
