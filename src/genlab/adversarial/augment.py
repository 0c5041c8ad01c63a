"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-efficient GANs.

The same random transformations are applied to real and generated images before the
discriminator sees them, and they are differentiable with respect to the pixels, so the
generator's gradient passes through them. D can then no longer memorise a small training
set, yet G is not taught to produce augmented images (the augmentation is not leaked into
the samples, unlike augmenting only the real data).

Policies (images (B, C, H, W) in [-1, 1]):

* ``"translation"``: shift each image by up to ``1/8`` of its size (at least one pixel)
  in x and y, filling with the background value -1;
* ``"cutout"``: blank one square of half the image size at a random place (to -1);
* ``"color"``: random brightness, saturation and contrast (only for RGB, C == 3).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import GenlabError

POLICIES = ("translation", "cutout", "color")
BACKGROUND = -1.0


def parse_policy(policy: str | Sequence[str] | None, channels: int) -> tuple[str, ...]:
    """Checked policy names from "translation,cutout,color" (or a list); "color" is
    dropped for non-RGB images; "none"/""/None = no augmentation."""
    if policy is None:
        return ()
    names = [p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy) if p.strip()]
    if names in (["none"], []):
        return ()
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise GenlabError(
            f"augment={policy!r}: unknown {', '.join(map(repr, bad))}; use a comma-separated subset of {', '.join(POLICIES)} or 'none'"
        )
    return tuple(p for p in dict.fromkeys(names) if p != "color" or channels == 3)


def translate(x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift every image by an integer offset in [-s, s]² (s = max(1, round(ratio·size)))."""
    b, _, h, w = x.shape
    sh, sw = max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device, generator=generator)
    iy = torch.arange(h, device=x.device)[None, :, None] - dy + sh  # source row in the padded image
    ix = torch.arange(w, device=x.device)[None, None, :] - dx + sw
    padded = torch.nn.functional.pad(x, (sw, sw, sh, sh), value=BACKGROUND)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, iy, ix].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a (ratio·H) x (ratio·W) square at a random centre of each image to the background."""
    b, _, h, w = x.shape
    ch, cw = max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))
    # the square may reach past the border (then less is cut), as in DiffAugment
    top = torch.randint(0, h, (b, 1, 1), device=x.device, generator=generator) - ch // 2
    left = torch.randint(0, w, (b, 1, 1), device=x.device, generator=generator) - cw // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    mask = (~inside)[:, None].to(x.dtype)
    return x * mask + BACKGROUND * (1 - mask)


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness (±0.5 on the [-1, 1] scale), saturation (x0..2) and contrast (x0.5..1.5)."""
    b = x.shape[0]

    def u(*shape: int) -> torch.Tensor:
        return torch.rand((b, *shape), device=x.device, dtype=x.dtype, generator=generator)

    x = x + (u(1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u(1, 1, 1) * 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u(1, 1, 1) + 0.5) + mean


def diff_augment(x: torch.Tensor, policy: Sequence[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policies in the order colour, translation, cutout (that of DiffAugment)."""
    if "color" in policy:
        x = color(x, generator)
    if "translation" in policy:
        x = translate(x, generator=generator)
    if "cutout" in policy:
        x = cutout(x, generator=generator)
    return x
