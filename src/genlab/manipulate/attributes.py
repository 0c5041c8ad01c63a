"""Attribute vectors: directions in latent space between two labelled groups of images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ..validation import check_float, check_images
from .interpolation import _check_codec


def attribute_vector(
    model: Any, images: Any, labels: Any, label_a: int, label_b: int, *, y: Any = None
) -> torch.Tensor:
    """Mean code of the images labelled ``label_a`` minus the mean code of those labelled ``label_b``: (d,) float32.

    ``labels`` (N,) mark the attribute (e.g. 1 = smiling, 0 = not, or two digit classes).
    A class-conditional model encodes with class labels ``y`` (default: ``labels``).
    """
    _check_codec(model)
    images = check_images(images)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.shape != (len(images),):
        raise GenlabError(f"labels: shape {lab.shape}, expected ({len(images)},) — one label per image")
    for name, value in (("label_a", label_a), ("label_b", label_b)):
        if not np.any(lab == value):
            raise GenlabError(f"{name}={value}: no image has this label (labels present: {sorted(set(lab.tolist()))})")
    if label_a == label_b:
        raise GenlabError("label_a and label_b are the same label; the attribute vector would be 0")
    conditional = bool(getattr(model, "conditional", False))
    codes = model.encode(images, y=(lab if y is None else y) if conditional else None).to(torch.float64)
    mask_a, mask_b = torch.from_numpy(lab == label_a), torch.from_numpy(lab == label_b)
    return (codes[mask_a].mean(0) - codes[mask_b].mean(0)).to(torch.float32)


def apply_attribute(model: Any, images: Any, vector: Any, strength: float = 1.0, *, y: Any = None) -> torch.Tensor:
    """Decode ``encode(images) + strength * vector``: uint8 (N, C, H, W).

    ``strength`` 0 gives the reconstructions; negative values remove the attribute.
    Conditional models need the class labels ``y``.
    """
    _check_codec(model)
    images = check_images(images)
    strength = check_float("strength", strength)
    v = torch.as_tensor(
        np.asarray(vector.detach().cpu() if isinstance(vector, torch.Tensor) else vector), dtype=torch.float32
    ).reshape(-1)
    codes = model.encode(images, y=y)
    if v.shape[0] != codes.shape[1]:
        raise GenlabError(f"vector: {v.shape[0]} entries, but the model's codes have {codes.shape[1]}")
    return model.decode(codes + strength * v[None], y=y)
