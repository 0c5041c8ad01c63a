"""Training metrics: a CSV file in the checkpoint folder, and TensorBoard when installed."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.csv"
#: columns every row has; the network's own logs follow as ``train_<key>`` / ``val_<key>``
BASE_COLUMNS = ("kind", "step", "epoch", "lr", "train_loss", "val_loss", "images_per_s", "elapsed_s")


class MetricsLog:
    """Appends rows to ``metrics.csv`` (and TensorBoard scalars when ``tensorboard`` is importable).

    The columns are fixed by the first row written (base columns, then the extra keys
    of that row in sorted order); later keys that were not there are dropped from the CSV
    but still reach TensorBoard. ``kind`` is "step" (running means over the last
    ``log_every`` steps) or "epoch" (the epoch's means and its validation loss).
    """

    def __init__(self, directory: str | Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(directory) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        elif self.path.is_file():
            self.path.unlink()
        self._tb = _tensorboard_writer(self.path.parent / "tensorboard") if tensorboard else None

    def _truncate_after(self, step: int) -> None:
        """Keep the rows written up to ``step``: a resumed run rewrites what came after."""
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        step_col = header.index("step") if "step" in header else None
        kept = [
            r
            for r in body
            if len(r) == len(header) and step_col is not None and r[step_col].isdigit() and int(r[step_col]) <= step
        ]
        self.columns = header
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(kept)
        tmp.replace(self.path)

    def write(self, row: dict[str, Any], *, extra_columns: list[str] | None = None) -> None:
        """Append ``row``; ``extra_columns`` fixes the non-base columns when this is the first row
        (default: the row's own extra keys, sorted)."""
        if self.columns is None:
            extra = (
                list(extra_columns) if extra_columns is not None else sorted(k for k in row if k not in BASE_COLUMNS)
            )
            self.columns = list(BASE_COLUMNS) + [c for c in extra if c not in BASE_COLUMNS]
            with open(self.path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self.columns)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in self.columns])
        if self._tb is not None:
            step = int(row.get("step", 0))
            prefix = "epoch" if row.get("kind") == "epoch" else "step"
            for key, value in row.items():
                if (
                    key not in ("kind", "step")
                    and isinstance(value, (int, float))
                    and value is not None
                    and math.isfinite(float(value))
                ):
                    self._tb.add_scalar(f"{prefix}/{key}", float(value), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics.csv (a file or the folder holding it) as dicts of strings."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _tensorboard_writer(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional: no writer, no message
        return None
    return SummaryWriter(log_dir=str(directory))
