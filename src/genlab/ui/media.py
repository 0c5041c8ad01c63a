"""Pictures for the pages: training curves as inline SVG, PNG bytes with generation
parameters in their text metadata (and reading them back), uploaded images fitted to a
model's image shape."""

from __future__ import annotations

import csv
import io
import json
import math
from html import escape
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .limits import MAX_CURVE_POINTS, MAX_IMAGE_SIDE
from .paths import HTTPError

#: the PNG text chunk holding the JSON of a generation's parameters
PNG_PARAMS_KEY = "genlab"


def read_curves(csv_path: Path) -> dict[str, list[tuple[float, float]]]:
    """{"train_loss": [(step, value), ...], "val_loss": [...]} from a trainer metrics.csv
    ("step" rows for the training loss, "epoch" rows for the validation loss); empty curves
    when the file is missing or unreadable (a run still starting)."""
    from ..training.metrics import read_metrics

    curves: dict[str, list[tuple[float, float]]] = {"train_loss": [], "val_loss": []}
    try:
        rows = read_metrics(csv_path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return curves
    for row in rows:
        step = _finite(row.get("step"))
        for key, points in curves.items():
            value = _finite(row.get(key))
            if step is not None and value is not None and (key != "train_loss" or row.get("kind") == "step"):
                points.append((step, value))
    return curves


def _finite(text: str | None) -> float | None:
    """A CSV cell as a finite float, None when empty, unparsable or not finite."""
    try:
        value = float(text or "nan")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _thin(points: list[tuple[float, float]], limit: int = MAX_CURVE_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    idx = np.linspace(0, len(points) - 1, limit).round().astype(int)
    return [points[i] for i in idx]


def curves_svg(
    curves: dict[str, list[tuple[float, float]]],
    *,
    width: int = 480,
    height: int = 220,
    css_id: str = "",
    css_class: str = "curve",
) -> str:
    """An inline SVG line plot of the curves (x: step, y: loss); an empty plot says 'no log yet'."""
    colors = {"train_loss": "#1f77b4", "val_loss": "#d62728"}
    series = {k: _thin(v) for k, v in curves.items() if v}
    attrs = f'class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"'
    if css_id:
        attrs += f' id="{css_id}"'
    if not series:
        return f'<svg {attrs}><text x="10" y="{height // 2}" class="muted">no training log yet</text></svg>'
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [p[1] for pts in series.values() for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + abs(y0) * 0.1 + 1e-9
    left, right, top, bottom = 52, 10, 10, 28
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f"<svg {attrs}>", f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for v in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="10">{v:.3g}</text>')
    for v in (x0, x1):
        parts.append(f'<text x="{sx(v):.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{v:.0f}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 1}" text-anchor="middle" font-size="10">step</text>')
    for i, (key, pts) in enumerate(series.items()):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{colors.get(key, "#333")}" stroke-width="1.5" points="{path}" data-series="{escape(key)}"/>'
        )
        if len(pts) == 1:
            parts.append(
                f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{colors.get(key, "#333")}"/>'
            )
        parts.append(
            f'<text x="{left + 8}" y="{top + 14 + 12 * i}" font-size="11" fill="{colors.get(key, "#333")}">{escape(key.replace("_", " "))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(
    title: str, values: dict[str, float | None], *, reference: float | None = None, css_class: str = "compare-plot"
) -> str:
    """A horizontal bar chart of one metric over runs (the real-vs-real reference as a dashed line)."""
    items = [(k, v) for k, v in values.items() if v is not None and math.isfinite(v)]
    height = 30 + 18 * max(1, len(items))
    width = 420
    parts = [
        f'<svg class="{css_class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"><text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>'
    ]
    top = max([abs(v) for _, v in items] + ([abs(reference)] if reference is not None else []) + [1e-12])
    left, pw = 150, width - 150 - 60
    for i, (name, v) in enumerate(items):
        y = 22 + 18 * i
        w = abs(v) / top * pw
        parts.append(f'<text x="{left - 4}" y="{y + 11}" text-anchor="end" font-size="11">{escape(name[:22])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="13" fill="#1f77b4"/>')
        parts.append(f'<text x="{left + w + 3:.1f}" y="{y + 11}" font-size="10">{v:.4g}</text>')
    if reference is not None and math.isfinite(reference):
        x = left + abs(reference) / top * pw
        parts.append(
            f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height}" stroke="#d62728" stroke-dasharray="4 3"><title>real data {reference:.4g}</title></line>'
        )
    parts.append("</svg>")
    return "".join(parts)


def png_bytes(images, *, params: dict[str, Any] | None = None, ncols: int | None = None) -> bytes:
    """A PNG grid of uint8 (N, C, H, W) images; ``params`` go into its text metadata: one
    chunk per parameter and the whole set as JSON under :data:`PNG_PARAMS_KEY`."""
    from PIL.PngImagePlugin import PngInfo

    from ..images import array_to_pil, auto_scale, make_grid

    grid = make_grid(images, ncols=ncols)
    img = array_to_pil(grid, auto_scale(int(images.shape[2]), target=48))
    info = PngInfo()
    if params:
        info.add_text(PNG_PARAMS_KEY, json.dumps(params, sort_keys=True))
        for key, value in params.items():
            if value is not None:
                info.add_text(str(key), str(value))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def open_image(data: bytes, field: str):
    """A PIL image from uploaded bytes; 400 when it is not an image or too large."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
            raise HTTPError(400, f"{field}: {w}x{h} pixels; at most {MAX_IMAGE_SIDE} per side")
        img.load()
    except HTTPError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise HTTPError(400, f"{field}: not a readable image ({exc})") from None
    return img


def read_png_params(data: bytes) -> dict[str, Any]:
    """The generation parameters stored by :func:`png_bytes` (404-free: 400 when absent)."""
    img = open_image(data, "png")
    text = getattr(img, "text", None) or img.info
    raw = text.get(PNG_PARAMS_KEY)
    if not raw:
        raise HTTPError(400, "png: carries no genlab generation parameters")
    try:
        params = json.loads(raw)
    except ValueError:
        raise HTTPError(400, "png: its genlab parameters are not valid JSON") from None
    if not isinstance(params, dict):
        raise HTTPError(400, "png: its genlab parameters are not a JSON object")
    return params


def fit_image(data: bytes, shape: Iterable[int], field: str) -> np.ndarray:
    """An uploaded image as uint8 (C, H, W) of the model's ``shape`` (gray or RGB, resized)."""
    from PIL import Image

    c, h, w = (int(s) for s in shape)
    img = open_image(data, field).convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if c == 1 else arr.transpose(2, 0, 1).copy()


def mask_from_png(data: bytes, h: int, w: int) -> np.ndarray:
    """A painted mask (any size; white/opaque = regenerate) as a uint8 (h, w) image, 255 =
    regenerate: a model pixel is regenerated when at least a quarter of the painted area over
    it is painted (a canvas brush is much finer than an 8x8 or 28x28 image)."""
    from PIL import Image

    img = open_image(data, "mask")
    if img.mode in ("RGBA", "LA") or "transparency" in img.info:
        painted = img.convert("RGBA").getchannel("A")
    else:
        painted = img.convert("L")
    coverage = np.asarray(painted.point(lambda v: 255 if v >= 128 else 0).resize((w, h), Image.BOX))
    return np.where(coverage >= 64, 255, 0).astype(np.uint8)


def svg_json(obj: Any) -> str:
    """JSON for embedding in a <script> element (no '</' sequences)."""
    return json.dumps(obj).replace("</", "<\\/")
