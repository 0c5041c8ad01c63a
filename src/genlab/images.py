"""Image grids and PNG output with PIL + NumPy (no torchvision)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .io import atomic_write_bytes


def to_numpy_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 as a NumPy array."""
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu").numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    return images


def make_grid(
    images: torch.Tensor | np.ndarray, ncols: int | None = None, padding: int = 1, pad_value: int = 40
) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images into one (H', W', C) uint8 array, row by row."""
    x = to_numpy_uint8(images)
    n, c, h, w = x.shape
    if ncols is None:
        ncols = int(np.ceil(np.sqrt(max(n, 1))))
    ncols = max(1, min(ncols, max(n, 1)))
    nrows = int(np.ceil(n / ncols)) if n else 1
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top : top + h, left : left + w] = x[i].transpose(1, 2, 0)
    return grid


def array_to_pil(array_hwc: np.ndarray, scale: int = 1) -> Image.Image:
    arr = array_hwc[..., 0] if array_hwc.shape[-1] == 1 else array_hwc
    img = Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def auto_scale(height: int, target: int = 28 * 3) -> int:
    """Nearest-neighbour upscaling factor so small images (8x8) stay visible."""
    return max(1, target // max(height, 1))


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def save_grid(
    images: torch.Tensor | np.ndarray, path: str | os.PathLike, ncols: int | None = None, scale: int | None = None
) -> Path:
    """Write a PNG grid of (N, C, H, W) uint8 images atomically."""
    x = to_numpy_uint8(images)
    scale = auto_scale(x.shape[2]) if scale is None else scale
    return save_png(array_to_pil(make_grid(x, ncols), scale), path)


def labelled_panels(
    panels: Sequence[tuple[str, np.ndarray]], scale: int, gap: int = 12, title_height: int = 18
) -> Image.Image:
    """Place (title, grid HWC) panels side by side with a caption above each."""
    rendered = [array_to_pil(grid, scale).convert("RGB") for _, grid in panels]
    width = sum(im.width for im in rendered) + gap * (len(rendered) + 1)
    height = max(im.height for im in rendered) + title_height + 2 * gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for (title, _), im in zip(panels, rendered):
        draw.text((x, gap // 2), title, fill=(0, 0, 0))
        canvas.paste(im, (x, gap + title_height))
        x += im.width + gap
    return canvas
