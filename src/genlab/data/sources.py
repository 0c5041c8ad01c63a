"""Dataset sources and the ``load_dataset(spec)`` entry point.

Specs: ``digits`` (scikit-learn's bundled 8x8 digits, offline), ``mnist`` /
``fashion-mnist`` (downloaded once, add ``:test`` for the official test set),
``npz:PATH`` and ``folder:PATH``. ``captions=`` attaches one caption per image: a caption file
for folders, or ``"auto"`` (genlab writes them from labels and measured attributes, digit datasets).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..device import physical_memory_bytes
from ..errors import GenlabError
from .captions import captions_for_files
from .dataset import Dataset
from .download import IDX_SOURCES, load_idx_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: pixels per image when PIL's own limit is switched off (Image.MAX_IMAGE_PIXELS = None): 8192 x 8192
MAX_IMAGE_PIXELS = 1 << 26

DATASET_HELP = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); offline, the default",
    "mnist": "MNIST 28x28 digits, 60,000 training images (mnist:test = the 10,000 test images); downloaded once",
    "fashion-mnist": "Fashion-MNIST 28x28 clothing, 60,000 images (fashion-mnist:test for the test set); downloaded once",
    "npz:PATH": "a NumPy .npz with x (N,H,W) or (N,C,H,W) uint8 pixels and optional integer labels y",
    "folder:PATH": "a folder of PNG/JPEG images, one sub-folder per class or flat; resize with --size",
}


def list_datasets() -> dict[str, str]:
    """Known dataset specs and what they load."""
    return dict(DATASET_HELP)


def load_dataset(
    spec: str, *, size: int | tuple[int, int] | None = None, channels: str = "auto", captions: str | Path | None = None
) -> Dataset:
    """Load a dataset from a spec string.

    Parameters
    ----------
    spec : str
        ``digits``, ``mnist[:test]``, ``fashion-mnist[:test]``, ``npz:PATH`` or ``folder:PATH``.
    size : int or (height, width), optional
        Resize every image to this size (required for folders with mixed sizes).
    channels : {"auto", "gray", "rgb"}
        Colour handling for folders: ``auto`` keeps grayscale when every image is grayscale.
    captions : str or path, optional
        ``"auto"``: captions written by genlab from each image's label and measured stroke thickness,
        slant and size (labelled digit datasets only; see :func:`genlab.text.auto_captions`).
        A file path (``folder:PATH`` only): CSV with columns ``image,caption`` (or ``file,text``) or
        JSONL ``{"image": ..., "caption": ...}``, relative to the folder or absolute; every image
        needs exactly one caption.

    Returns
    -------
    Dataset
        ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) or None, ``class_names``, ``captions``
        (list of N strings, or None without ``captions=``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise GenlabError(f"dataset spec {spec!r} is empty; known: {', '.join(DATASET_HELP)}")
    spec = spec.strip()
    if channels not in ("auto", "gray", "rgb"):
        raise GenlabError(f"channels={channels!r}: use 'auto', 'gray' or 'rgb'")
    kind, _, arg = spec.partition(":")
    kind_lower = kind.lower()
    if kind_lower == "digits" and not arg:
        ds = _load_digits()
    elif kind_lower in IDX_SOURCES:
        images, labels, names = load_idx_dataset(kind_lower, arg or "train")
        ds = Dataset(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels), names, name=spec)
    elif kind_lower == "npz" and arg:
        ds = _load_npz(Path(arg).expanduser(), spec)
    elif kind_lower == "folder" and arg:
        caption_file = None if captions is None or _is_auto(captions) else captions
        ds = _load_folder(Path(arg).expanduser(), spec, size, channels, caption_file)
        return _auto_captions(ds) if _is_auto(captions) else ds
    else:
        raise GenlabError(f"unknown dataset {spec!r}; known: {', '.join(DATASET_HELP)}")
    if captions is not None and not _is_auto(captions):
        raise GenlabError(
            f"captions={str(captions)!r}: caption files map image files to captions, so they apply to folder:PATH datasets; "
            f"for {spec} use captions='auto' (genlab writes captions for digit datasets)"
        )
    ds = resize_dataset(ds, size) if size is not None else ds
    return _auto_captions(ds) if _is_auto(captions) else ds


def _is_auto(captions) -> bool:
    return isinstance(captions, str) and captions.strip().lower() == "auto"


def _auto_captions(ds: Dataset) -> Dataset:
    from ..text.captions import auto_captions  # lazy: data does not need the text package otherwise

    ds.captions = auto_captions(ds)
    return ds


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 ink counts -> 0..255, the same mapping as the shared digits.npz
    images = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)
    return Dataset(
        torch.from_numpy(images)[:, None],
        torch.from_numpy(bunch.target.astype(np.int64)),
        [str(i) for i in range(10)],
        name="digits",
    )


def _to_uint8(x: np.ndarray, where: str) -> np.ndarray:
    """Validate pixel values and return uint8. Floats in [0, 1] are scaled by 255."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise GenlabError(f"{where}: pixel dtype {x.dtype} is not supported; use uint8 (0..255) or floats in [0, 1]")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise GenlabError(
                f"{where}: {int(bad.sum())} NaN/inf pixel values (first at index {tuple(int(i) for i in first)})"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.round(x * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0 and np.all(x == np.round(x)):
            return x.astype(np.uint8)
        raise GenlabError(
            f"{where}: float pixels must lie in [0, 1] (or be whole numbers in 0..255); found range [{lo:g}, {hi:g}]"
        )
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise GenlabError(f"{where}: integer pixels must lie in 0..255; found range [{lo}, {hi}]")
    return x.astype(np.uint8)


def memory_limit_bytes() -> int:
    """The most bytes one dataset may take in memory: half of this machine's physical memory
    (``GENLAB_MAX_DATA_BYTES`` overrides it)."""
    override = os.environ.get("GENLAB_MAX_DATA_BYTES")
    if override:
        try:
            return int(float(override))
        except ValueError:
            raise GenlabError(f"GENLAB_MAX_DATA_BYTES={override!r} must be a number of bytes") from None
    return physical_memory_bytes() // 2


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def _npz_header(archive: zipfile.ZipFile, name: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of member ``name`` of an .npz, read from its .npy header alone, checked
    against the member's stored size and the memory limit before any data is read."""
    info = archive.getinfo(f"{name}.npy")
    try:
        with archive.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh, max_header_size=10_000)
            header_bytes = fh.tell() if hasattr(fh, "tell") else 0
    except Exception as exc:  # a damaged header: numpy raises ValueError, zipfile BadZipFile, ...
        raise GenlabError(
            f"{path}: array {name!r} has no readable .npy header ({exc.__class__.__name__}: {exc})"
        ) from None
    if dtype.hasobject:
        raise GenlabError(
            f"{path}: array {name!r} holds Python objects (dtype {dtype}), which would need pickle; genlab refuses them"
        )
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if header_bytes and nbytes + header_bytes != info.file_size:
        raise GenlabError(
            f"{path}: array {name!r} claims shape {shape} ({_gb(nbytes)}) but holds {_gb(max(info.file_size - header_bytes, 0))}; the file is damaged"
        )
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise GenlabError(
            f"{path}: array {name!r} of shape {shape} needs {_gb(nbytes)}, more than the {_gb(limit)} genlab allows a dataset (half this machine's memory)"
        )
    return shape, dtype


def _load_npz(path: Path, spec: str) -> Dataset:
    if not path.is_file():
        raise GenlabError(f"{path}: file not found")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise GenlabError(
            f"{path}: is a .npy file (one array); npz: needs an .npz archive with x (and optional y): numpy.savez(path, x=images, y=labels)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
            if "x" not in members:
                raise GenlabError(
                    f"{path}: missing array 'x' (found: {', '.join(members) or 'nothing'}); expected x (N,H,W) or (N,C,H,W) and optional y (N,)"
                )
            headers = {name: _npz_header(zf, name, path) for name in ("x", "y") if name in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise GenlabError(f"{path}: not a readable .npz file ({exc})") from None
    x_shape = headers["x"][0]
    if len(x_shape) not in (3, 4):
        raise GenlabError(f"{path}: array 'x' has shape {x_shape}; expected (N,H,W) or (N,C,H,W)")
    if "y" in headers and (len(headers["y"][0]) != 1 or headers["y"][0][0] != x_shape[0]):
        raise GenlabError(f"{path}: array 'y' has shape {headers['y'][0]}; expected ({x_shape[0]},) to match x")
    try:
        archive = np.load(path, allow_pickle=False, mmap_mode=None)
    except Exception as exc:
        raise GenlabError(f"{path}: not a readable .npz file ({exc})") from None
    if not hasattr(archive, "files"):
        raise GenlabError(f"{path}: expected an .npz archive with arrays 'x' (and optionally 'y'), got a single array")
    with archive:
        try:
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
        except (
            ValueError,
            OSError,
            EOFError,
            zipfile.BadZipFile,
        ) as exc:  # object arrays need pickle, which we refuse; truncated data
            raise GenlabError(f"{path}: {exc}") from None
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # channels-last (N,H,W,C)
    else:
        raise GenlabError(f"{path}: array 'x' has shape {x.shape}; expected (N,H,W) or (N,C,H,W)")
    if x.shape[1] not in (1, 3):
        raise GenlabError(
            f"{path}: array 'x' has shape {x.shape}: {x.shape[1]} channels; genlab images have 1 (grayscale) or 3 (RGB) channels, "
            "as (N,H,W), (N,1|3,H,W) or (N,H,W,1|3)"
        )
    if x.shape[0] == 0:
        raise GenlabError(f"{path}: array 'x' holds no images")
    if x.size == 0:
        raise GenlabError(f"{path}: array 'x' has shape {x.shape}: images of zero size")
    x = _to_uint8(x, f"{path}: x")
    labels = class_names = None
    if y is not None:
        if y.ndim != 1 or len(y) != len(x):
            raise GenlabError(f"{path}: array 'y' has shape {y.shape}; expected ({len(x)},) to match x")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                raise GenlabError(f"{path}: labels 'y' must be integers, got dtype {y.dtype}")
        values, labels = np.unique(y, return_inverse=True)
        class_names = [str(v) for v in values]
        labels = torch.from_numpy(labels.astype(np.int64))
    return Dataset(torch.from_numpy(np.ascontiguousarray(x)), labels, class_names, name=spec)


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
        if (h, w) != tuple(size):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise GenlabError(f"size={size!r}: give one integer or (height, width)") from None
    if h < 1 or w < 1:
        raise GenlabError(f"size={size}: must be positive")
    return h, w


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a genlab run or model (run.json, or config.json + model.safetensors)."""
    path = Path(path)
    return (path / "run.json").is_file() or (
        (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    )


def _inside_run(path: Path, root: Path) -> bool:
    """Whether a file under ``root`` lies in a hidden folder or a genlab run folder (whose
    samples.png and checkpoint grids are no training data)."""
    for parent in path.parents:
        if parent == root:
            return False
        if parent.name.startswith(".") or is_run_folder(parent):
            return True
    return False


def _load_folder(root: Path, spec: str, size, channels: str, captions: str | Path | None = None) -> Dataset:
    if not root.is_dir():
        raise GenlabError(f"{root}: folder not found")
    if is_run_folder(root):
        raise GenlabError(f"{root}: a genlab run folder, not a folder of training images")
    target = _parse_size(size)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not is_run_folder(p))
    top_images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if subdirs and top_images:
        raise GenlabError(
            f"{root}: holds both images and sub-folders; use one sub-folder per class, or a flat folder of images"
        )
    files: list[Path] = []
    labels: list[int] = []
    class_names = None
    if subdirs:
        class_names = []
        for cls in subdirs:
            imgs = sorted(
                p
                for p in cls.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not _inside_run(p, root)
            )
            if not imgs:
                continue
            class_names.append(cls.name)
            files += imgs
            labels += [len(class_names) - 1] * len(imgs)
    else:
        files = top_images
    if not files:
        raise GenlabError(f"{root}: no PNG/JPEG images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    # captions are checked before any image is decoded, so a bad caption file fails fast
    caption_list = captions_for_files(captions, root, files) if captions is not None else None
    if target is not None:
        _check_dataset_bytes(
            len(files) * 3 * target[0] * target[1], f"{root}: {len(files)} images resized to {target[0]}x{target[1]}"
        )
    pil_images: list[Image.Image] = []
    max_pixels = int(Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS)
    total = 0
    for f in files:
        try:
            with warnings.catch_warnings():
                # PIL only warns between MAX_IMAGE_PIXELS and twice that; genlab refuses both
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    w, h = im.size  # from the header: nothing is decoded yet
                    if w * h > max_pixels:
                        raise GenlabError(
                            f"{f}: {w}x{h} = {w * h:,} pixels, more than the {max_pixels:,} allowed (PIL's MAX_IMAGE_PIXELS; a decompression bomb?)"
                        )
                    total += w * h * 4  # decoded bytes, at most 4 per pixel (RGBA) before conversion
                    _check_dataset_bytes(total, f"{root}: the images up to {f.name}")
                    im.load()
                    pil_images.append(im.copy())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise GenlabError(f"{f}: refused as a decompression bomb ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise GenlabError(f"{f}: unreadable or corrupt image ({exc.__class__.__name__}: {exc})") from None
    gray_modes = {"1", "L", "LA", "I", "I;16", "F", "P"}
    if channels == "auto":
        is_gray = all(im.mode in gray_modes and (im.mode != "P" or _palette_is_gray(im)) for im in pil_images)
    else:
        is_gray = channels == "gray"
    mode = "L" if is_gray else "RGB"
    if target is None:
        sizes = {}
        for f, im in zip(files, pil_images):
            sizes.setdefault(im.size, f)
            if len(sizes) > 1:
                (s1, f1), (s2, f2) = list(sizes.items())[:2]
                raise GenlabError(
                    f"{root}: images have different sizes ({f1.name}: {s1[0]}x{s1[1]}, {f2.name}: {s2[0]}x{s2[1]}); pass --size to resize them"
                )
    arrays = []
    for im in pil_images:
        im = _convert(im, mode)
        if target is not None and im.size != (target[1], target[0]):
            im = im.resize((target[1], target[0]), Image.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays))
    return Dataset(images, torch.tensor(labels) if class_names else None, class_names, name=spec, captions=caption_list)


def _check_dataset_bytes(nbytes: int, what: str) -> None:
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise GenlabError(
            f"{what} need {_gb(nbytes)} of memory, more than the {_gb(limit)} genlab allows a dataset (half this machine's memory)"
        )


def _palette_is_gray(im: Image.Image) -> bool:
    pal = im.getpalette() or []
    triples = np.asarray(pal[: (len(pal) // 3) * 3]).reshape(-1, 3)
    return bool(np.all(triples[:, 0] == triples[:, 1]) and np.all(triples[:, 1] == triples[:, 2]))


def _convert(im: Image.Image, mode: str) -> Image.Image:
    if im.mode in ("I", "I;16", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a * 255.0 / hi, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, im)
    return im.convert(mode)


def resize_dataset(ds: Dataset, size) -> Dataset:
    """Resize every image of ``ds`` (Lanczos) to ``size``."""
    target = _parse_size(size)
    if target is None or tuple(ds.images.shape[2:]) == target:
        return ds
    _check_dataset_bytes(
        len(ds) * ds.images.shape[1] * target[0] * target[1],
        f"{ds.name}: {len(ds)} images resized to {target[0]}x{target[1]}",
    )
    out = []
    for img in ds.images.numpy():
        mode = "L" if img.shape[0] == 1 else "RGB"
        pil = Image.fromarray(img[0] if mode == "L" else img.transpose(1, 2, 0), mode)
        a = np.asarray(pil.resize((target[1], target[0]), Image.LANCZOS), dtype=np.uint8)
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return Dataset(torch.from_numpy(np.stack(out)), ds.labels, ds.class_names, name=ds.name, captions=ds.captions)
