"""Working on real images with a trained run: :func:`interpolate_run`, :func:`reconstruct_run`
(latent-variable models) and :func:`edit_run`, :func:`inpaint_run` (diffusion)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import GenlabError
from .common import check_output_file, load_data

#: named regions of :func:`inpaint_run`
REGIONS = ("left", "right", "top", "bottom", "center")


def _model_and_data(run_dir: str | Path, data_spec: str | None, *, needs: tuple[str, ...] = (), what: str = ""):
    """(model, dataset) for the manipulation workflows: ``data_spec`` or the run's data. The
    model must have the methods ``needs``."""
    from ..models import GenerativeModel
    from ..runs import RunInfo

    model = GenerativeModel.load(run_dir)
    if not set(needs) <= type(model).capabilities:
        raise GenlabError(f"{model.name} cannot do this ({'/'.join(needs)}); this command needs {what}")
    if data_spec is None:
        info = RunInfo.load(run_dir)
        data = info.load_data()  # checked against the run's data fingerprint
        data_spec = info.data
    else:
        data = load_data(data_spec, None)
    if tuple(data.image_shape) != tuple(model.image_shape_):
        raise GenlabError(
            f"--data {data_spec}: images of shape {data.image_shape}, but the model works on {tuple(model.image_shape_)}"
        )
    return model, data


def check_index(index: int | None, option: str) -> None:
    """Image indices count from 0; a negative one (Python's "from the end") is refused."""
    if index is not None and int(index) < 0:
        raise GenlabError(f"{option} {index}: image indices count from 0 (no negative indices)")


@dataclass
class InterpolateResult:
    #: (steps + 2, C, H, W) uint8: the first real image, the interpolation, the second
    strip: torch.Tensor
    #: how the path was computed, e.g. "slerp" or "DDIM inversion (50 steps) + slerp"
    how: str
    out: Path


def interpolate_run(
    run_dir: str | Path,
    out_png: str | Path,
    *,
    data_spec: str | None = None,
    from_index: int | None = None,
    to_index: int | None = None,
    from_label: int | None = None,
    to_label: int | None = None,
    steps: int = 10,
    mode: str = "linear",
    inversion_steps: int = 50,
    prompt: str | None = None,
    overwrite: bool = False,
) -> InterpolateResult:
    """Walk from one real image to another through a model's latent space and write the strip.

    Models with an encoder interpolate the two images' codes (``mode`` "linear" or "slerp");
    models that invert instead (diffusion: DDIM inversion; GAN: latent optimisation, each
    ``inversion_steps`` steps) decode the slerp of the two inverted latents.
    Each end is picked by index or by the first image with a label.
    """
    check_output_file(out_png, "-o", overwrite=overwrite)
    from ..images import save_grid
    from ..manipulate import interpolate as interpolate_images
    from ..manipulate import pick_image

    if (from_index is None) == (from_label is None) or (to_index is None) == (to_label is None):
        raise GenlabError("give --from-index or --from-label, and --to-index or --to-label")
    check_index(from_index, "--from-index")
    check_index(to_index, "--to-index")
    model, data = _model_and_data(run_dir, data_spec, needs=())
    capabilities = type(model).capabilities
    if "interpolate" not in capabilities:
        raise GenlabError(
            f"{model.name} has no latent space to walk through; interpolate needs a model with the 'interpolate' capability (genlab models)"
        )
    a, label_a = pick_image(data, index=from_index, label=from_label)
    b, label_b = pick_image(data, index=to_index, label=to_label)
    conditional = bool(model.conditional)
    if "invert" in capabilities:  # no encoder: both images are inverted (diffusion: DDIM; GAN: latent optimisation)
        if conditional and label_a != label_b:
            raise GenlabError(
                f"a class-conditional {model.name} model interpolates within one class: pick two images with the same label"
            )
        strip = model.interpolate(a, b, steps, y=label_a if conditional else None, prompt=prompt, steps=inversion_steps)
        how = f"{model.inversion_method} ({inversion_steps} steps) + slerp"
    else:
        if prompt is not None:
            raise GenlabError("--prompt applies to text-conditional diffusion models")
        strip = interpolate_images(
            model, a, b, steps, mode, y_a=label_a if conditional else None, y_b=label_b if conditional else None
        )
        how = mode
    strip = torch.cat([a, strip, b])
    save_grid(strip, out_png, ncols=steps + 2)
    return InterpolateResult(strip, how, Path(out_png))


@dataclass
class ReconstructResult:
    n: int
    #: mean absolute pixel error as a fraction of full scale (0..1)
    mean_absolute_error: float
    out: Path


def reconstruct_run(
    run_dir: str | Path,
    out_png: str | Path,
    *,
    data_spec: str | None = None,
    n_images: int = 32,
    overwrite: bool = False,
) -> ReconstructResult:
    """Encode and decode real images (default: the run's held-out test images) with a model
    that has the "reconstruct" capability; write rows of originals above rows of their reconstructions."""
    check_output_file(out_png, "-o", overwrite=overwrite)
    from ..images import save_grid
    from ..runs import RunInfo

    model, data = _model_and_data(
        run_dir, data_spec, needs=("reconstruct",), what="a model with an encoder (vae, wae, flow; gan by inversion)"
    )
    if data_spec is None:
        _, data = RunInfo.load(run_dir).load_split()  # held-out images: reconstructions the model did not train on
    n = min(n_images, len(data))
    ncols = min(n, 16)
    n -= n % ncols  # whole rows, so each row of originals sits above its reconstructions
    images = data.images[:n]
    labels = data.labels[:n] if model.conditional else None
    if model.conditional and labels is None:
        raise GenlabError(f"{model.name} is class-conditional and the data has no labels")
    recon = model.reconstruct(images, y=labels)
    rows = []
    for start in range(0, n, ncols):
        rows += [images[start : start + ncols], recon[start : start + ncols]]
    save_grid(torch.cat(rows), out_png, ncols=ncols)
    err = float((images.float() - recon.float()).abs().mean() / 255)
    return ReconstructResult(n, err, Path(out_png))


def _diffusion_and_images(run_dir, data_spec, indices: Sequence[int], n_images: int, method: str):
    """The diffusion model and the images to work on: ``indices`` of ``data_spec`` (or of the
    run's data), else the first ``n_images`` held-out test images."""
    from ..manipulate import pick_image
    from ..runs import RunInfo

    for i in indices:
        check_index(i, "--index")
    model, data = _model_and_data(run_dir, data_spec, needs=(method,), what="a diffusion run")
    if indices:
        return model, torch.cat([pick_image(data, index=i)[0] for i in indices])
    if data_spec is None:
        _, data = RunInfo.load(run_dir).load_split()  # held-out images: the model never saw them
    return model, data.images[: min(n_images, len(data))]


@dataclass
class EditResult:
    #: (n_images * (1 + len(strengths)), C, H, W): per image, the original then one edit per strength
    grid: torch.Tensor
    n_images: int
    strengths: list[float]
    out: Path


def edit_run(
    run_dir: str | Path,
    out_png: str | Path,
    *,
    strengths: Sequence[float] = (0.3, 0.5, 0.7, 0.9),
    data_spec: str | None = None,
    indices: Sequence[int] = (),
    n_images: int = 8,
    label: int | None = None,
    prompt: str | None = None,
    guidance: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> EditResult:
    """Image-to-image (SDEdit) with a diffusion run: one row per image, the original then one
    edit per noise level in ``strengths`` (0 keeps the image, 1 is a fresh sample),
    optionally steered by ``label`` or ``prompt``."""
    check_output_file(out_png, "-o", overwrite=overwrite)
    from ..images import save_grid

    levels = [float(s) for s in strengths]
    if not levels:
        raise GenlabError("--strength: give at least one level")
    model, images = _diffusion_and_images(run_dir, data_spec, indices, n_images, "edit")
    columns = [images] + [
        model.edit(images, s, y=label, prompt=prompt, guidance=guidance, steps=steps, seed=seed) for s in levels
    ]
    grid = torch.stack(columns, dim=1).reshape(-1, *images.shape[1:])
    save_grid(grid, out_png, ncols=len(columns))
    return EditResult(grid, len(images), levels, Path(out_png))


def region_mask(region: str, h: int, w: int) -> torch.Tensor:
    """A boolean (h, w) mask of a named region (see :data:`REGIONS`): True = regenerate."""
    if region not in REGIONS:
        raise GenlabError(f"region {region!r}: choose one of {', '.join(REGIONS)}")
    mask = torch.zeros(h, w, dtype=torch.bool)
    if region == "left":
        mask[:, : w // 2] = True
    elif region == "right":
        mask[:, w // 2 :] = True
    elif region == "top":
        mask[: h // 2] = True
    elif region == "bottom":
        mask[h // 2 :] = True
    else:
        mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    return mask


def read_mask(path: str | Path, h: int, w: int) -> torch.Tensor:
    """A grayscale PNG of h x w pixels as a boolean mask: white (>= 128) = regenerate."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        arr = np.asarray(Image.open(path).convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise GenlabError(f"--mask-file {path}: cannot read it as an image ({exc})") from None
    if arr.shape != (h, w):
        raise GenlabError(f"--mask-file {path}: {arr.shape[1]}x{arr.shape[0]} pixels, the images are {w}x{h}")
    return torch.from_numpy(arr >= 128)


@dataclass
class InpaintResult:
    #: per image: the original, the image with the region blanked, then the variants
    grid: torch.Tensor
    n_images: int
    #: (H, W) bool, True where pixels were regenerated
    mask: torch.Tensor
    variants: int
    out: Path


def inpaint_run(
    run_dir: str | Path,
    out_png: str | Path,
    *,
    region: str = "right",
    mask_file: str | Path | None = None,
    variants: int = 4,
    data_spec: str | None = None,
    indices: Sequence[int] = (),
    n_images: int = 8,
    label: int | None = None,
    prompt: str | None = None,
    guidance: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> InpaintResult:
    """Regenerate part of real images with a diffusion run (``region``, or the white pixels
    of ``mask_file``): one row per image, the original, the blanked image, then ``variants``
    completions (seeds ``seed``, ``seed + 1``, ...)."""
    check_output_file(out_png, "-o", overwrite=overwrite)
    from ..images import save_grid

    model, images = _diffusion_and_images(run_dir, data_spec, indices, n_images, "inpaint")
    _, h, w = images.shape[1:]
    mask = read_mask(mask_file, h, w) if mask_file is not None else region_mask(region, h, w)
    blanked = images.clone()
    blanked[:, :, mask] = 128
    completions = [
        model.inpaint(images, mask, y=label, prompt=prompt, guidance=guidance, steps=steps, seed=seed + v)
        for v in range(variants)
    ]
    grid = torch.stack([images, blanked] + completions, dim=1).reshape(-1, *images.shape[1:])
    save_grid(grid, out_png, ncols=2 + variants)
    return InpaintResult(grid, len(images), mask, variants, Path(out_png))


__all__: list[Any] = [
    "interpolate_run",
    "reconstruct_run",
    "edit_run",
    "inpaint_run",
    "region_mask",
    "read_mask",
    "REGIONS",
]
