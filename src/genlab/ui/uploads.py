"""Uploaded training sets: a ``.npz`` (``x`` images, optional ``y`` labels) or a ``.zip`` of image
files, stored under ``RUNS_DIR/.uploads/`` (hidden: never listed as a run) by content hash."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

from .limits import MAX_DATA_UPLOAD_BYTES, MAX_ZIP_FILES, MAX_ZIP_UNPACKED_BYTES
from .paths import HTTPError

UPLOADS = ".uploads"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def save_upload(runs_dir: Path, filename: str, content: bytes) -> str:
    """Store an uploaded dataset and return its spec (``npz:PATH`` or ``folder:PATH``)."""
    if len(content) > MAX_DATA_UPLOAD_BYTES:
        raise HTTPError(413, f"data_upload: {len(content):,} bytes; at most {MAX_DATA_UPLOAD_BYTES:,}")
    digest = hashlib.sha256(content).hexdigest()[:24]
    folder = Path(runs_dir) / UPLOADS
    folder.mkdir(exist_ok=True)
    lower = filename.lower()
    if lower.endswith(".npz") or content[:4] == b"PK\x03\x04" and _is_npz(content):
        target = folder / f"{digest}.npz"
        if not target.exists():
            _check_npz(content)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(target)
        return f"npz:{target}"
    if lower.endswith(".zip"):
        target = folder / digest
        if not target.is_dir():
            _extract_images(content, target)
        return f"folder:{target}"
    raise HTTPError(400, f"data_upload: {filename[:60]!r}; upload a .npz (x, y) or a .zip of images")


def _is_npz(content: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            return any(n.endswith(".npy") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _check_npz(content: bytes) -> None:
    """Only arrays of numbers, no pickled objects, within the unpacked-size limit."""
    import numpy as np

    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            if sum(i.file_size for i in z.infolist()) > MAX_ZIP_UNPACKED_BYTES:
                raise HTTPError(413, f"data_upload: unpacks to more than {MAX_ZIP_UNPACKED_BYTES:,} bytes")
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            if "x" not in npz.files:
                raise HTTPError(
                    400,
                    f"data_upload: the .npz has no 'x' array of images (it has {', '.join(npz.files) or 'none'}); expected x (N,H,W) or (N,C,H,W) and optional labels y (N,)",
                )
            for name in npz.files:
                npz[name]  # reading each array refuses pickled objects
    except HTTPError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise HTTPError(400, f"data_upload: not a readable .npz ({exc})") from None


def _extract_images(content: bytes, target: Path) -> None:
    """Unpack the image files of a zip (flat, by their base names; other members and any
    path trickery ignored) into ``target``, within the file-count and size limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise HTTPError(400, "data_upload: not a readable .zip") from None
    with archive:
        members = [
            i
            for i in archive.infolist()
            if not i.is_dir() and PurePosixPath(i.filename).suffix.lower() in IMAGE_SUFFIXES
        ]
        if not members:
            raise HTTPError(400, "data_upload: the .zip holds no image files (.png, .jpg, ...)")
        if len(members) > MAX_ZIP_FILES:
            raise HTTPError(413, f"data_upload: {len(members):,} images; at most {MAX_ZIP_FILES:,}")
        if sum(i.file_size for i in members) > MAX_ZIP_UNPACKED_BYTES:
            raise HTTPError(413, f"data_upload: unpacks to more than {MAX_ZIP_UNPACKED_BYTES:,} bytes")
        tmp = target.with_name(target.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for k, info in enumerate(members):
            base = PurePosixPath(info.filename).name
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".") or "image"
            with archive.open(info) as src:
                data = src.read(MAX_ZIP_UNPACKED_BYTES + 1)
            (tmp / f"{k:06d}-{safe}").write_bytes(data)
        tmp.replace(target)
