"""Run directories: what ``genlab fit`` writes and ``sample``/``score``/``evaluate`` read.

A run directory holds ``config.json`` + ``model.safetensors`` (the model, see
:meth:`GenerativeModel.save`), ``run.json`` (the data spec and split it was trained on),
``metrics.json`` and ``samples.png``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .data import Dataset, load_dataset
from .errors import GenlabError
from .io import read_json, write_json

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"


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

    def save(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / RUN_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: Path) -> "RunInfo":
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise GenlabError(f"{run_dir}: not a genlab run directory ({RUN_FILE} is missing); create one with 'genlab fit'")
        raw = read_json(path)
        try:
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except TypeError as exc:
            raise GenlabError(f"{path}: malformed ({exc})") from None

    def load_split(self) -> tuple[Dataset, Dataset]:
        """The exact (train, test) split this run was trained on."""
        return load_dataset(self.data, size=self.size, captions=self.captions).split(self.test_fraction, self.split_seed)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def update_metrics(run_dir: Path, **entries) -> dict:
    """Merge ``entries`` into the run's metrics.json (written atomically)."""
    path = Path(run_dir) / METRICS_FILE
    metrics = read_json(path) if path.is_file() else {}
    metrics.update(entries)
    write_json(path, metrics)
    return metrics
