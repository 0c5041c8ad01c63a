"""Interpolation between two images in a model's latent space."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ..validation import check_choice, check_images, check_int

INTERPOLATION_MODES = ("linear", "slerp")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985) between codes a and b (d,) at times t (T,): (T, d).

    ``sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b`` with Ω the angle between a and b; the
    norm moves smoothly between ‖a‖ and ‖b‖ instead of dipping towards the origin (where a
    Gaussian prior puts little mass in high dimensions). Nearly parallel or antiparallel
    codes fall back to linear interpolation (the great circle is then ill defined).
    """
    a64, b64, t64 = a.to(torch.float64), b.to(torch.float64), t.to(torch.float64)[:, None]
    na, nb = a64.norm(), b64.norm()
    linear = (1 - t64) * a64 + t64 * b64
    if float(na) == 0.0 or float(nb) == 0.0:
        return linear.to(a.dtype)
    cos = torch.clamp((a64 @ b64) / (na * nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    if float(sin) < 1e-6:
        return linear.to(a.dtype)
    out = (torch.sin((1 - t64) * omega) * a64 + torch.sin(t64 * omega) * b64) / sin
    return out.to(a.dtype)


def interpolate_codes(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """``steps`` codes (steps, d) from code a to code b (both (d,)), endpoints included."""
    steps = check_int("steps", steps, minimum=2)
    check_choice("mode", mode, INTERPOLATION_MODES)
    a, b = torch.as_tensor(a, dtype=torch.float32).reshape(-1), torch.as_tensor(b, dtype=torch.float32).reshape(-1)
    if a.shape != b.shape:
        raise GenlabError(f"codes of different sizes: {tuple(a.shape)} and {tuple(b.shape)}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    if mode == "slerp":
        return slerp(a, b, t)
    return ((1 - t)[:, None] * a.to(torch.float64) + t[:, None] * b.to(torch.float64)).to(torch.float32)


def _one_image(x: Any, name: str) -> torch.Tensor:
    images = check_images(
        x
        if (hasattr(x, "ndim") and x.ndim == 4)
        else np.asarray(x)[None]
        if not isinstance(x, torch.Tensor)
        else x[None],
        name=name,
    )
    if images.shape[0] != 1:
        raise GenlabError(f"{name}: expected one image, got {images.shape[0]}")
    return images


def interpolate(
    model: Any, a: Any, b: Any, steps: int = 10, mode: str = "linear", *, y_a: int | None = None, y_b: int | None = None
) -> torch.Tensor:
    """Decode ``steps`` codes between the codes of images ``a`` and ``b``: uint8 (steps, C, H, W).

    ``a``, ``b``: one uint8 image each ((C, H, W), (H, W) or (1, C, H, W)). ``mode``:
    "linear" or "slerp" (see :func:`slerp`). The first and last images are the model's
    reconstructions of ``a`` and ``b``. A class-conditional model needs their labels
    ``y_a`` and ``y_b``; the label is blended along the path as soft one-hot weights.
    """
    _check_codec(model)
    steps = check_int("steps", steps, minimum=2)
    check_choice("mode", mode, INTERPOLATION_MODES)
    img_a, img_b = _one_image(a, "a"), _one_image(b, "b")
    conditional = bool(getattr(model, "conditional", False))
    if conditional and (y_a is None or y_b is None):
        raise GenlabError("the model is class-conditional: give the labels of both images (y_a, y_b)")
    if not conditional and (y_a is not None or y_b is not None):
        raise GenlabError("the model is not class-conditional: call interpolate without y_a/y_b")
    za = model.encode(img_a, y=None if not conditional else [int(y_a)])[0]
    zb = model.encode(img_b, y=None if not conditional else [int(y_b)])[0]
    codes = interpolate_codes(za, zb, steps, mode)
    soft = None
    if conditional:
        k = int(model.n_classes_)
        t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)[:, None]
        eye = torch.eye(k, dtype=torch.float64)
        soft = ((1 - t) * eye[int(y_a)] + t * eye[int(y_b)]).numpy().astype(np.float32)
    return model.decode(codes, y=soft)


def pick_image(
    images: Any, *, index: int | None = None, label: int | None = None, labels: Any = None
) -> tuple[torch.Tensor, int | None]:
    """One image (1, C, H, W) and its label: by ``index``, or the first image whose label is ``label``.

    ``images``: a Dataset or uint8 images; ``labels``: their labels (taken from a Dataset).
    """
    from ..data.dataset import Dataset

    if isinstance(images, Dataset):
        labels = images.labels if labels is None else labels
        images = images.images
    images = check_images(images)
    lab = None if labels is None else (labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels))
    if (index is None) == (label is None):
        raise GenlabError("give exactly one of index or label")
    if index is not None:
        if not isinstance(index, (int, np.integer)) or not -len(images) <= index < len(images):
            raise GenlabError(f"index={index} is out of range for {len(images)} images")
        return images[int(index)][None], (int(lab[int(index)]) if lab is not None else None)
    if lab is None:
        raise GenlabError("label: the data has no labels; pick images by index instead")
    hits = np.flatnonzero(lab == int(label))
    if hits.size == 0:
        raise GenlabError(f"label={label}: no image has this label (labels present: {sorted(set(lab.tolist()))})")
    return images[int(hits[0])][None], int(label)


def _check_codec(model: Any) -> None:
    if not (hasattr(model, "encode") and hasattr(model, "decode")):
        name = getattr(model, "name", type(model).__name__)
        raise GenlabError(f"{name} has no encoder/decoder; latent manipulation needs an autoencoder (vae, wae)")
