"""Helpers shared by the service functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import GenlabError

#: receives one human-readable progress line at a time (``print``, ``click.echo``, a log, a web socket)
Echo = Callable[[str], None]


def silent(_: str = "") -> None:
    """The default ``echo``: say nothing."""


def load_data(spec: str, size: int | None = None, captions: str | None = None):
    """The dataset ``spec`` (see :func:`genlab.data.load_dataset`), with images of 1 or 3 channels."""
    from ..data import load_dataset

    data = load_dataset(spec, size=size, captions=captions)
    check_channels(data, spec)
    return data


def check_channels(data, spec: str) -> None:
    """genlab's models, grids and metrics take gray (1 channel) or RGB (3) images."""
    if data.image_shape[0] not in (1, 3):
        raise GenlabError(
            f"--data {spec}: images with {data.image_shape[0]} channels; genlab takes 1 (gray) or 3 (RGB)"
        )


#: fewest samples the evaluation metrics accept: the intrinsic-dimension estimate of
#: :func:`genlab.metrics.evaluate.sample_metrics` needs k + 1 = 21 distinct images (k = 20)
MIN_EVAL_SAMPLES = 21


def check_eval_samples(n: int) -> None:
    """Refuse a sample count the metrics cannot work with, before any work."""
    if n < MIN_EVAL_SAMPLES:
        raise GenlabError(
            f"-n {n}: the metrics need at least {MIN_EVAL_SAMPLES} samples (k = 20 nearest neighbours of the intrinsic-dimension estimate)"
        )


def check_compare_dir(out_dir: str | Path) -> None:
    """A ``genlab compare`` output folder: new, empty, or an earlier comparison (which it
    resumes); never a run folder or a folder of other files."""
    from ..runs import is_run_folder

    out_dir = Path(out_dir)
    for folder in (out_dir, *out_dir.absolute().parents):
        if folder.exists():
            if not folder.is_dir():
                raise GenlabError(f"--out {out_dir}: {folder} is a file, not a folder")
            break
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "compare.json").is_file():
        what = "a genlab run folder" if is_run_folder(out_dir) else "not empty and not an earlier comparison"
        raise GenlabError(f"--out {out_dir}: {what}; choose a new folder")


def check_output_file(path: str | Path | None, option: str, *, overwrite: bool = False) -> Path | None:
    """Refuse an output file that would destroy something: a file of a run folder (its model,
    config, run record, metrics, samples or checkpoints), an existing file unless
    ``overwrite``, a folder, or a path under a file. Returns the path (None stays None)."""
    from ..runs import CHECKPOINTS, RUN_FILES, run_folder_of

    if path is None:
        return None
    path = Path(path).expanduser()
    run = run_folder_of(path)
    if run is not None and (path.name in RUN_FILES or path.resolve().parent.name == CHECKPOINTS):
        raise GenlabError(f"{option} {path}: a file of the run folder {run}; write the output elsewhere")
    if path.is_dir():
        raise GenlabError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise GenlabError(f"{option} {path}: exists; pass --overwrite to replace it")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise GenlabError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise GenlabError(f"{option} {path}: cannot write into {parent}")
            break
    return path


def next_free(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem-1.suffix``, ``-2``, ...: the first name not taken."""
    k = 1
    while (folder / f"{stem}-{k}{suffix}").exists():
        k += 1
    return folder / f"{stem}-{k}{suffix}"
