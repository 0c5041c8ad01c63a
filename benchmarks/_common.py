"""Shared helpers for the benchmark scripts: data, timing, thread limits, tables."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_shared(name: str):
    """(train uint8 (N,1,H,W), test uint8, train labels, test labels) from ../shared/data/NAME.npz."""
    path = SHARED_DATA / f"{name}.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmarks read the shared data files")
    d = np.load(path)
    x = torch.from_numpy(d["x"])[:, None]
    tr, te = torch.from_numpy(d["train_idx"]), torch.from_numpy(d["test_idx"])
    y = torch.from_numpy(d["y"])
    return x[tr], x[te], y[tr], y[te]


def load_split(name: str, data_dir: Path = SHARED_DATA):
    """(train, test) Datasets of DATA_DIR/NAME.npz split as the benchmarks share it: ``split(0.2, 0)``."""
    import genlab

    path = Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the benchmarks read the shared data files")
    return genlab.load_dataset(f"npz:{path}").split(0.2, 0)


@contextlib.contextmanager
def threads(n: int | None):
    """Limit torch and the BLAS/OpenMP pools of NumPy/scikit-learn to n threads (None: all)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if n is None:
        yield
        return
    torch.set_num_threads(n)
    with threadpool_limits(limits=n):
        try:
            yield
        finally:
            torch.set_num_threads(before)


def timed(fn, repeat: int = 1):
    """(median seconds, last result) over ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns``."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return f"{v:.2e}"
    return str(v)
