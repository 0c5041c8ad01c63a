"""Loaded models, kept in a bounded least-recently-used cache keyed by run folder and the
modification time of its weights (a refitted run is loaded again)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .limits import MODEL_CACHE_SIZE


class ModelCache:
    """``get(run_dir)`` -> the loaded :class:`~genlab.models.GenerativeModel`; at most
    ``size`` models are kept. Loading happens under a per-run lock (two requests for the same
    run load it once); sampling needs no lock (``sample`` takes per-call options)."""

    def __init__(self, size: int = MODEL_CACHE_SIZE):
        self.size = int(size)
        self._models: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0

    def get(self, run_dir: Path) -> Any:
        from ..models import GenerativeModel

        key = str(Path(run_dir).resolve())
        try:
            stamp = (Path(run_dir) / "model.safetensors").stat().st_mtime_ns
        except OSError:
            stamp = 0
        with self._lock:
            hit = self._models.get(key)
            if hit is not None and hit[0] == stamp:
                self._models.move_to_end(key)
                return hit[1]
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                hit = self._models.get(key)
                if hit is not None and hit[0] == stamp:
                    return hit[1]
            model = GenerativeModel.load(run_dir)
            with self._lock:
                self.loads += 1
                self._models[key] = (stamp, model)
                self._models.move_to_end(key)
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            return model
