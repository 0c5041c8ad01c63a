"""Summaries of the runs under RUNS_DIR, read once and cached by file modification time, so
that the runs page of a hundred runs is a hundred ``stat`` calls, not a hundred JSON parses."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .paths import _NAME

#: the files a summary is made of; a change of any of their mtimes re-reads the run
SUMMARY_FILES = ("config.json", "run.json", "metrics.json")
#: evaluation metrics shown as columns of the runs table (key, title)
EVAL_COLUMNS = (
    ("fd", "FD"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("coverage", "coverage"),
    ("copies", "near-copies"),
)
#: hyper-parameters shown in the "key parameters" column when a run sets them
KEY_PARAMS = (
    "condition",
    "n_components",
    "covariance_type",
    "bandwidth",
    "latent_dim",
    "width",
    "channel_mults",
    "preset",
    "max_steps",
    "epochs",
    "loss",
    "schedule",
    "prediction",
)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_summary(run_dir: Path) -> dict[str, Any]:
    """One row of the runs table (JSON-able) from the run's config.json, run.json and metrics.json."""
    config = _read_json(run_dir / "config.json") or {}
    info = _read_json(run_dir / "run.json") or {}
    metrics = _read_json(run_dir / "metrics.json") or {}
    params = config.get("params") or {}
    evaluation = (metrics.get("evaluation") or {}).get("metrics") or {}
    training = metrics.get("training") or {}
    key_params = {k: params[k] for k in KEY_PARAMS if params.get(k) not in (None, "none")}
    return {
        "name": run_dir.name,
        "model": config.get("model") or info.get("model") or "?",
        "data": info.get("data", ""),
        "created": info.get("created", ""),
        "key_params": key_params,
        "fit_seconds": metrics.get("fit_seconds"),
        "steps": training.get("steps"),
        "likelihood": metrics.get("likelihood") or config.get("likelihood"),
        "bits_per_dim": metrics.get("test_bits_per_dim"),
        "evaluation": {k: evaluation.get(k) for k, _ in EVAL_COLUMNS},
        "evaluated": bool(evaluation),
        "has_samples": (run_dir / "samples.png").is_file(),
        "condition": params.get("condition", "none"),
    }


class RunIndex:
    """The runs of one RUNS_DIR: :meth:`list` returns their summaries (cached per run by the
    mtimes of its summary files; ``reads`` counts the summaries actually parsed)."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._cache: dict[str, tuple[tuple, dict]] = {}
        self._lock = threading.Lock()
        self.reads = 0

    def _stamp(self, folder: Path) -> tuple | None:
        stamp = []
        for name in SUMMARY_FILES:
            try:
                st = os.stat(folder / name)
            except OSError:
                if name == "config.json":
                    return None  # not a run
                st = None
            stamp.append(None if st is None else (st.st_mtime_ns, st.st_size))
        stamp.append(os.path.exists(folder / "samples.png"))
        return tuple(stamp)

    def list(self) -> list[dict[str, Any]]:
        """Every run (a direct sub-folder with config.json and a valid name; links out of
        RUNS_DIR skipped), newest first."""
        rows = []
        try:
            entries = list(os.scandir(self.runs_dir))
        except OSError:
            return []
        root = self.runs_dir.resolve()
        seen = set()
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not _NAME.fullmatch(name) or entry.is_symlink() or not entry.is_dir():
                continue
            folder = Path(entry.path)
            stamp = self._stamp(folder)
            if stamp is None or folder.resolve().parent != root:
                continue
            seen.add(name)
            with self._lock:
                cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                summary = read_summary(folder)
                with self._lock:
                    self.reads += 1
                    self._cache[name] = (stamp, summary)
            else:
                summary = cached[1]
            rows.append(summary)
        with self._lock:
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        rows.sort(key=lambda r: (r["created"], r["name"]), reverse=True)
        return rows
