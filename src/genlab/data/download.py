"""Download, verify and cache IDX datasets (MNIST, Fashion-MNIST).

Files are fetched from the dataset's canonical mirrors into the cache directory
(``$GENLAB_DATA``, default ``~/.cache/genlab``), checked against their published MD5
and only then renamed into place, so the cache never holds a partial or corrupt file.
Offline, loading fails with one message that says which files to put where.
"""

from __future__ import annotations

import gzip
import hashlib
import os

import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DownloadError, GenlabError
from ..progress import progress


@dataclass
class IdxSource:
    """Where an IDX dataset lives: mirrors (tried in order) and ``file name -> md5``."""

    mirrors: list[str]
    files: dict[str, str]
    class_names: list[str]
    splits: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {
            "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        }
    )


IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        mirrors=[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        class_names=[str(i) for i in range(10)],
    ),
    "fashion-mnist": IdxSource(
        mirrors=[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        class_names=[
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    ),
}

TIMEOUT_S = 30.0


def cache_dir() -> Path:
    """``$GENLAB_DATA`` or ``~/.cache/genlab``."""
    env = os.environ.get("GENLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genlab"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_one(url: str, target: Path, expected_md5: str) -> None:
    """Fetch ``url`` into a temp file beside ``target``, verify, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        got = md5sum(Path(tmp))
        if got != expected_md5:
            raise DownloadError(
                f"{url}: checksum mismatch (md5 {got}, expected {expected_md5}); the file was discarded"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_files(name: str, source: IdxSource, needed: list[str]) -> Path:
    """Make sure the ``needed`` files of dataset ``name`` are cached and verified."""
    folder = cache_dir() / name
    missing = []
    for fname in needed:
        path = folder / fname
        if path.is_file():
            if md5sum(path) == source.files[fname]:
                continue
            path.unlink()  # a corrupt cached file is fetched again
        missing.append(fname)
    for fname in missing:
        errors: list[str] = []
        for mirror in source.mirrors:
            url = mirror + fname
            try:
                _download_one(url, folder / fname, source.files[fname])
                break
            except DownloadError as exc:
                errors.append(str(exc))
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                errors.append(f"{url}: {reason}")
        else:
            checksum_failures = [e for e in errors if "checksum mismatch" in e]
            if checksum_failures:
                raise DownloadError(f"{name}: {checksum_failures[0]}")
            files = ", ".join(needed)
            raise DownloadError(
                f"could not download {name} ({errors[-1] if errors else 'no mirror'}); offline? "
                f"Put the files {files} (from {source.mirrors[0]}) into {folder}/ or set GENLAB_DATA to a folder that has {name}/ with them"
            )
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file into a NumPy array (uint8 payloads only)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise GenlabError(f"{path}: unreadable IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise GenlabError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise GenlabError(f"{path}: IDX type 0x{data[2]:02x} is not supported (only unsigned bytes)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise GenlabError(f"{path}: IDX header says shape {shape} but the file holds {len(data) - header} values")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, H, W) uint8, labels (N,) int64, class names) for ``name``'s ``split``."""
    source = IDX_SOURCES[name]
    if split not in source.splits:
        raise GenlabError(f"{name}:{split}: unknown split; use one of {', '.join(source.splits)}")
    images_file, labels_file = source.splits[split]
    folder = ensure_files(name, source, [images_file, labels_file])
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise GenlabError(f"{folder}: {images_file} and {labels_file} do not match ({images.shape} vs {labels.shape})")
    return images, labels, list(source.class_names)
