"""Run directories: what ``genlab fit`` writes and ``sample``/``score``/``evaluate`` read.

A run directory holds ``config.json`` + ``model.safetensors`` (the model, see
:meth:`GenerativeModel.save`), ``run.json`` (the data it was trained on — absolute paths
and a fingerprint — and its split), ``metrics.json``, ``samples.png`` and, for neural
models, ``checkpoints/``.

A run folder is published whole: :func:`publish_run` writes every file into a hidden
sibling folder (:func:`staging_path`) and swaps it into place with one atomic rename
(``renameat2(RENAME_EXCHANGE)`` where an old run is replaced), so a process killed at any
moment leaves on disk either the old run or the new one, never a mix of the two.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .data import Dataset, load_dataset
from .data.sources import is_run_folder
from .errors import GenlabError
from .io import read_json, write_json

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
#: the files of a run folder that genlab writes (and that no other command may overwrite)
RUN_FILES = ("config.json", "model.safetensors", RUN_FILE, METRICS_FILE, "samples.png", "samples-prompts.txt")


@dataclass
class RunInfo:
    """How a run's model was trained: enough to rebuild its train/test split."""

    model: str
    data: str
    size: int | None = None
    test_fraction: float = 0.2
    split_seed: int = 0
    seed: int = 0
    #: caption source of a text-conditional run ("auto" or a caption file), else None
    captions: str | None = None
    created: str = ""
    #: {"count", "shape", "sha256"} of the whole dataset (see :func:`data_fingerprint`); None in old runs
    data_fingerprint: dict | None = None

    def save(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / RUN_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> "RunInfo":
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise GenlabError(
                f"{run_dir}: not a genlab run directory ({RUN_FILE} is missing); create one with 'genlab fit'"
            )
        raw = read_json(path)
        try:
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except TypeError as exc:
            raise GenlabError(f"{path}: malformed ({exc})") from None

    def load_data(self) -> Dataset:
        """The whole dataset this run was trained on; refuses data that no longer matches the
        fingerprint recorded at fit time (a file replaced, edited, or found elsewhere)."""
        data = load_dataset(self.data, size=self.size, captions=self.captions)
        if self.data_fingerprint is not None:
            found = data_fingerprint(data)
            expected = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.data_fingerprint.items()}
            if found != expected:
                what = ", ".join(
                    f"{k} {expected.get(k)} then, {found[k]} now"
                    for k in ("count", "shape", "sha256")
                    if found[k] != expected.get(k)
                )
                raise GenlabError(
                    f"{self.data}: no longer the data this run was trained on ({what}); restore it, or pass --data to use other data"
                )
        return data

    def load_split(self) -> tuple[Dataset, Dataset]:
        """The exact (train, test) split this run was trained on (fingerprint checked)."""
        return self.load_data().split(self.test_fraction, self.split_seed)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def update_metrics(run_dir: Path, **entries) -> dict:
    """Merge ``entries`` into the run's metrics.json (written atomically)."""
    path = Path(run_dir) / METRICS_FILE
    metrics = read_json(path) if path.is_file() else {}
    metrics.update(entries)
    write_json(path, metrics)
    return metrics


def data_fingerprint(data: Dataset) -> dict[str, Any]:
    """{"count", "shape" (C, H, W), "sha256" of the uint8 pixels and the labels}: enough to
    notice that a dataset spec now names different data."""
    digest = hashlib.sha256()
    images = data.images.contiguous()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.numpy().tobytes())
    if data.labels is not None:
        digest.update(data.labels.to(dtype=data.labels.dtype).contiguous().numpy().tobytes())
    return {"count": int(images.shape[0]), "shape": [int(s) for s in images.shape[1:]], "sha256": digest.hexdigest()}


def absolute_spec(spec: str) -> str:
    """``npz:rel/x.npz`` -> ``npz:/abs/rel/x.npz`` (same for ``folder:``); named datasets as they are.
    A run records absolute paths so that it finds its data from any working folder."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("npz", "folder") and rest:
        return f"{kind}:{Path(rest).expanduser().resolve()}"
    return spec


def run_folder_of(path: Path) -> Path | None:
    """The run folder that the file ``path`` belongs to (itself in it or in its checkpoints/), else None."""
    path = Path(path).resolve()
    for folder in (path.parent, path.parent.parent):
        if is_run_folder(folder) and (path.parent == folder or path.parent.name == CHECKPOINTS):
            return folder
    return None


def staging_path(out_dir: Path) -> Path:
    """The hidden sibling folder where the next version of run ``out_dir`` is assembled."""
    out_dir = Path(out_dir).absolute()
    return out_dir.parent / f".{out_dir.name}.genlab-new"


def publish_run(
    out_dir: Path, write: Callable[[Path], None], *, keep_from: Path | None = None, carry_over: bool = False
) -> Path:
    """Write a run folder whole and put it in place of ``out_dir`` atomically.

    ``write(folder)`` writes the run's files into the staging folder (:func:`staging_path`,
    which may already hold the checkpoints of a training run there). ``keep_from``: a folder
    whose ``checkpoints/`` (the training run's) are hard-linked into the new run (links, not
    copies: the checkpoint files are written atomically, so a link is a consistent snapshot
    and the old run keeps its own). ``carry_over``: also link the other files of the old
    ``out_dir`` that are not run files (the user's own, e.g. earlier sample grids).
    Then the staging folder is exchanged with ``out_dir`` in one rename and the old run
    deleted.
    """
    out_dir = Path(out_dir).absolute()
    staging = staging_path(out_dir)
    staging.mkdir(parents=True, exist_ok=True)
    if keep_from is not None and Path(keep_from).resolve() != staging.resolve():
        if (Path(keep_from) / CHECKPOINTS).is_dir():
            _link_tree(Path(keep_from) / CHECKPOINTS, staging / CHECKPOINTS)
    if carry_over and out_dir.is_dir():
        for entry in out_dir.iterdir():
            if entry.name not in RUN_FILES and entry.name != CHECKPOINTS and not (staging / entry.name).exists():
                _link_tree(entry, staging / entry.name) if entry.is_dir() else _link_file(entry, staging / entry.name)
    write(staging)
    _fsync_dir(staging)
    if out_dir.exists():
        _exchange(staging, out_dir)
        shutil.rmtree(staging, ignore_errors=True)  # now the old run
    else:
        os.rename(staging, out_dir)
    _fsync_dir(out_dir.parent)
    return out_dir


def _link_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (another file system, FAT, ...): copy
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".tmp"):  # a file being written right now (see genlab.io.atomic_write)
                continue
            source = Path(root) / name
            _link_file(source, dst / source.relative_to(src))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap folders ``a`` and ``b`` atomically (Linux renameat2). Elsewhere: two renames,
    with the old run kept under a hidden name until the new one is in place."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = getattr(libc, "renameat2", None)
        if renameat2 is not None:
            if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: this file system cannot; fall back
                raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")
    old = b.parent / f".{b.name}.genlab-old"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)
