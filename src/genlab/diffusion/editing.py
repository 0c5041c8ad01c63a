"""Editing real images with a trained diffusion model (the lecture's "manipulate the
generated images"); all three work in model space ([-1, 1] data) with any denoiser.

* :func:`sdedit` — image-to-image (Meng et al. 2022, SDEdit): noise the image up to time
  ``strength`` (0 = unchanged, 1 = pure noise, i.e. a fresh sample) and run the sampler
  back from there; the result keeps the coarse layout and re-imagines the details, steered
  by the denoiser's label or prompt.
* :func:`inpaint` — regenerate a masked region: after every sampler step the known region
  is replaced by the original noised to the current level (the replacement method of
  Song et al. 2021 / RePaint without resampling), so the generated part is drawn to agree
  with what is kept.
* :func:`interpolate_via_inversion` — DDIM inversion (Song et al. 2021) maps each real image
  to the noise that deterministic DDIM turns back into it; spherical interpolation between
  two such noises (they are near-Gaussian, so slerp keeps their norm) decoded by DDIM gives
  a path of images between the two real ones.
"""

from __future__ import annotations

import torch

from ..errors import GenlabError
from ..manipulate.interpolation import slerp
from ..validation import check_float, check_int
from .gaussian import q_sample
from .samplers import DDIMSampler, Denoiser, Sampler, ddim_invert
from .schedules import NoiseSchedule


def sdedit(
    denoise: Denoiser, sampler: Sampler, x: torch.Tensor, strength: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Image-to-image: ``x`` (B, C, H, W) in model space -> edited data, same shape.

    ``strength`` in (0, 1] is the time the image is noised to; the sampler's ``steps`` are
    spread over [0, strength] (so small strengths cost as much as large ones).
    """
    strength = check_float("strength", strength, minimum=0.0, exclusive=True, maximum=1.0)
    lam = sampler.schedule.logsnr(torch.tensor(strength, dtype=torch.float64)).to(x.dtype)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    z = q_sample(x, lam, noise)
    return sampler.sample(denoise, z, t_start=strength, generator=generator)


def inpaint(
    denoise: Denoiser,
    sampler: Sampler,
    x: torch.Tensor,
    regenerate: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the region ``regenerate`` (bool, broadcastable to ``x``; True = draw anew) of
    ``x`` (B, C, H, W, model space); the rest of the result equals ``x`` exactly."""
    if regenerate.dtype != torch.bool:
        raise GenlabError(f"mask: expected booleans (True = region to regenerate), got {regenerate.dtype}")
    keep = (~regenerate).to(device=x.device, dtype=x.dtype)

    def paste_known(z: torch.Tensor, logsnr: float) -> torch.Tensor:
        noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(device=z.device, dtype=z.dtype)
        known = q_sample(x, torch.tensor(logsnr, dtype=z.dtype, device=z.device), noise)
        return keep * known + (1.0 - keep) * z

    start = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    out = sampler.sample(denoise, start, generator=generator, callback=paste_known)
    return keep * x + (1.0 - keep) * out


def interpolate_via_inversion(
    invert_with: Denoiser,
    decode_with: Denoiser,
    schedule: NoiseSchedule,
    x_pair: torch.Tensor,
    n_images: int,
    *,
    steps: int = 50,
) -> torch.Tensor:
    """``n_images`` data points on the path between the two images ``x_pair`` (2, C, H, W,
    model space): DDIM-invert both with ``steps`` steps (``invert_with`` denoises batches of
    2), slerp the noises, decode with DDIM (``decode_with`` denoises batches of n_images).

    Returns (n_images, C, H, W); the ends are DDIM's reconstructions of the two images.
    """
    n_images = check_int("n_images", n_images, minimum=2)
    steps = check_int("steps", steps, minimum=1)
    if x_pair.shape[0] != 2:
        raise GenlabError(f"x_pair: expected 2 images, got {x_pair.shape[0]}")
    noises = ddim_invert(invert_with, x_pair, schedule, steps)
    weights = torch.linspace(0.0, 1.0, n_images, dtype=torch.float64)
    path = slerp(noises[0].flatten(), noises[1].flatten(), weights).reshape(n_images, *noises.shape[1:])
    return DDIMSampler(schedule, steps).sample(decode_with, path)


__all__ = ["sdedit", "inpaint", "interpolate_via_inversion"]
