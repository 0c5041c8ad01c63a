"""``genlab sample``: draw images from a trained run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import Echo, silent


@dataclass
class SampleResult:
    """What :func:`sample_run` wrote."""

    n: int
    seconds: float
    png: Path | None
    npy: Path | None

    @property
    def images_per_second(self) -> float:
        return self.n / max(self.seconds, 1e-9)


def sample_run(
    run_dir: str | Path,
    n: int,
    *,
    out_png: str | Path | None = None,
    out_npy: str | Path | None = None,
    seed: int | None = None,
    y: Any = None,
    ncols: int | None = None,
    echo: Echo = silent,
    **options: Any,
) -> SampleResult:
    """Draw ``n`` images from the run (or model folder) ``run_dir``; write them as a PNG grid
    ``out_png`` (default ``run_dir/samples.png``) and, when given, as uint8 (n, C, H, W) .npy.

    ``y``: class label(s) for class-conditional models; ``options`` (prompt, guidance, steps,
    sampler, ...) go to the model's ``sample`` as they are.
    """
    from ..images import save_grid
    from ..io import atomic_write
    from ..models import GenerativeModel

    model = GenerativeModel.load(run_dir)
    start = time.perf_counter()
    images = model.sample(n, y=y, seed=seed, **options)
    elapsed = time.perf_counter() - start
    png = Path(out_png) if out_png is not None else Path(run_dir) / "samples.png"
    save_grid(images, png, ncols=ncols)
    npy = None
    if out_npy is not None:
        def write_npy(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
                np.save(f, images.numpy())

        npy = atomic_write(out_npy, write_npy)
    return SampleResult(n, elapsed, png, npy)
