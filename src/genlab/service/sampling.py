"""``genlab sample``: draw images from a trained run, streamed to disk in chunks."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import GenlabError
from .common import Echo, check_output_file, next_free, silent

#: most images a PNG grid shows (a larger grid is a multi-gigapixel picture nobody can open)
GRID_MAX = 1_024
#: images drawn per call of ``model.sample``: memory stays bounded whatever ``n`` is
CHUNK = 1_024


@dataclass
class SampleResult:
    """What :func:`sample_run` wrote."""

    n: int
    seconds: float
    png: Path | None
    npy: Path | None
    #: images shown in the PNG grid (at most :data:`GRID_MAX`)
    n_grid: int = 0

    @property
    def images_per_second(self) -> float:
        return self.n / max(self.seconds, 1e-9)


def chunk_seed(seed: int | None, k: int) -> int | None:
    """The seed of chunk ``k``: ``seed`` itself for the first (so a draw of up to
    :data:`CHUNK` images is the plain ``model.sample(n, seed=seed)``), then seeds derived
    from (seed, k)."""
    if seed is None or k == 0:
        return seed
    return int(np.random.SeedSequence([int(seed) % 2**63, k]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def sample_run(
    run_dir: str | Path,
    n: int,
    *,
    out_png: str | Path | None = None,
    out_npy: str | Path | None = None,
    seed: int | None = None,
    y: Any = None,
    ncols: int | None = None,
    overwrite: bool = False,
    chunk: int = CHUNK,
    echo: Echo = silent,
    model: Any = None,
    on_chunk: Callable[[torch.Tensor, int], None] | None = None,
    **options: Any,
) -> SampleResult:
    """Draw ``n`` images from the run (or model folder) ``run_dir``.

    ``out_npy``: all n images as uint8 (n, C, H, W), streamed to disk ``chunk`` images at
    a time (memory does not grow with n). ``out_png``: a grid of the first
    min(n, :data:`GRID_MAX`) images; default: the next free ``run_dir/samples-K.png``, or
    none when only ``out_npy`` is given. Existing files are refused unless ``overwrite``;
    a run's own files always. ``y``: class label(s) (one, or one per image); ``options``
    (prompt, guidance, steps, sampler, ...) go to ``model.sample`` as they are (a list of
    one value per image is split with the chunks).

    Hooks for front ends that keep models loaded and stream (the web app): ``model``, the
    run's already loaded model (``run_dir`` is then only where default outputs go);
    ``on_chunk(images, first)``, called with each chunk of uint8 (m, C, H, W) images as it
    is drawn (``first``: index of its first image).
    """
    from ..images import save_grid
    from ..models import GenerativeModel

    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise GenlabError(f"-n {n}: must be a whole number >= 1")
    n = int(n)
    if model is None:
        model = GenerativeModel.load(run_dir)
    if out_png is None and out_npy is None:
        out_png = next_free(Path(run_dir), "samples", ".png")
    if out_png is not None and out_npy is None and n > GRID_MAX:
        raise GenlabError(
            f"-n {n}: a PNG grid shows at most {GRID_MAX:,} images; write more with --npy (a grid of the first {GRID_MAX:,} with -o too)"
        )
    png = check_output_file(out_png, "-o", overwrite=overwrite)
    npy = check_output_file(out_npy, "--npy", overwrite=overwrite)
    if png is not None and npy is not None and png.absolute() == npy.absolute():
        raise GenlabError(f"-o and --npy are the same file {png}")
    shape = tuple(int(s) for s in model.image_shape_)
    if npy is not None:
        need = n * int(np.prod(shape)) + 4096
        free = shutil.disk_usage(npy.absolute().parent).free
        if need > free:
            raise GenlabError(
                f"-n {n}: the .npy needs {need / 1e9:.2f} GB, {npy.absolute().parent} has {free / 1e9:.2f} GB free"
            )
    chunk = max(1, int(chunk))
    grid: list[torch.Tensor] = []
    n_grid = min(n, GRID_MAX) if png is not None else 0
    start = time.perf_counter()
    with _NpyWriter(npy, (n, *shape)) as writer:
        for k, first in enumerate(range(0, n, chunk)):
            m = min(chunk, n - first)
            images = model.sample(
                m,
                y=_part(y, first, m, n),
                seed=chunk_seed(seed, k),
                **{key: _part(v, first, m, n) for key, v in options.items()},
            )
            writer.write(images)
            if on_chunk is not None:
                on_chunk(images, first)
            if first < n_grid:
                grid.append(images[: n_grid - first])
            if n > chunk:
                echo(f"  {first + m:,} of {n:,} images")
    elapsed = time.perf_counter() - start
    if png is not None:
        save_grid(torch.cat(grid), png, ncols=ncols)
    return SampleResult(n, elapsed, png, npy, n_grid)


def _part(value: Any, first: int, m: int, n: int) -> Any:
    """``value[first:first + m]`` when it holds one entry per image, else ``value``."""
    if (
        isinstance(value, (list, tuple, np.ndarray, torch.Tensor))
        and not isinstance(value, str)
        and len(value) == n
        and n > 1
    ):
        return value[first : first + m]
    return value


class _NpyWriter:
    """Writes a uint8 .npy of a known shape chunk by chunk into a temporary file beside the
    target, renamed onto it only when complete (an interrupted draw leaves no half file)."""

    def __init__(self, path: Path | None, shape: tuple[int, ...]):
        self.path, self.shape, self.rows, self.file, self.tmp = path, shape, 0, None, None

    def __enter__(self) -> "_NpyWriter":
        if self.path is not None:
            self.path.absolute().parent.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.absolute().parent
            )
            self.file = os.fdopen(fd, "wb")
            np.lib.format.write_array_header_1_0(
                self.file, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": self.shape}
            )
        return self

    def write(self, images: torch.Tensor) -> None:
        if self.file is not None:
            self.file.write(images.numpy().astype(np.uint8, copy=False).tobytes())
            self.rows += len(images)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.file is None:
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if exc_type is None and self.rows == self.shape[0]:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
