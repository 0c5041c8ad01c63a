"""In-memory batches: seeded, resumable mid-epoch, shardable across processes.

Training data is a dict of equally long fields, e.g. ``{"images": uint8 (N, C, H, W),
"labels": int64 (N,)}`` (lists such as captions are allowed too). Epoch ``e`` visits the
rows in the order of a permutation seeded by ``(random_state, e)``, in batches of
``batch_size``; the incomplete last batch is dropped (every step sees a full batch; the
rows it drops differ per epoch). The position inside an epoch is just the batch index,
so resuming needs no sampler state beyond ``(epoch, batch)``.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import GenlabError

Batch = dict[str, Any]
Data = Mapping[str, Any]
#: data smaller than this is moved to the accelerator once instead of once per batch
DEVICE_DATA_BUDGET_BYTES = 2 << 30


def data_length(data: Data) -> int:
    """Number of rows; checks every field has the same length."""
    if "images" not in data:
        raise GenlabError("training data needs an 'images' field")
    lengths = {k: len(v) for k, v in data.items() if v is not None}
    n = lengths["images"]
    bad = {k: m for k, m in lengths.items() if m != n}
    if bad:
        raise GenlabError(f"training data fields differ in length: images has {n} rows, {bad}")
    if n == 0:
        raise GenlabError("training data is empty")
    return n


def take(data: Data, index: torch.Tensor) -> dict[str, Any]:
    """Rows ``index`` (a CPU tensor) of every field (tensors indexed on their own device,
    lists by comprehension).

    For data resident on an accelerator only the index travels, asynchronously: the
    gather runs there and the host never waits for the device."""
    out: dict[str, Any] = {}
    rows: list[int] | None = None
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            out[key] = value[index.to(value.device, non_blocking=value.device.type == "cuda")]
        else:
            rows = index.tolist() if rows is None else rows
            out[key] = [value[i] for i in rows]
    return out


def split_train_val(data: Data, val_fraction: float, seed: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Hold out ``round(val_fraction * N)`` rows (at least 1 when val_fraction > 0) with a
    fixed seed; returns (train, val) — val is None when ``val_fraction == 0``."""
    n = data_length(data)
    if val_fraction <= 0:
        return dict(data), None
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 1:
        raise GenlabError(
            f"val_fraction={val_fraction} leaves no training images out of {n}; lower it or pass more images"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "validation-split")))
    return take(data, perm[n_val:].sort().values), take(data, perm[:n_val].sort().values)


def move_data(data: Data, device: torch.device) -> dict[str, Any]:
    """Put tensor fields on ``device`` when they fit :data:`DEVICE_DATA_BUDGET_BYTES` (else
    pin them so per-batch copies can overlap compute)."""
    nbytes = sum(v.numel() * v.element_size() for v in data.values() if isinstance(v, torch.Tensor))
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            if device.type != "cpu" and nbytes <= DEVICE_DATA_BUDGET_BYTES:
                value = value.to(device)
            elif device.type == "cuda":
                value = value.pin_memory()
        out[key] = value
    return out


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches per epoch (one batch of all rows when there are fewer than batch_size)."""
    return max(1, n_train // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The visiting order of epoch ``epoch``, the same on every process and every run."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, f"epoch-{epoch}")))


def epoch_batches(
    data: Data,
    *,
    seed: int,
    epoch: int,
    batch_size: int,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
) -> Iterator[Batch]:
    """Batches ``start_batch, start_batch + 1, ...`` of epoch ``epoch``.

    Under data parallelism each global batch is split across ranks (``rows[rank::world]``),
    so ``batch_size`` is the global batch and all ranks take the same number of steps.
    """
    n = data_length(data)
    perm = epoch_permutation(n, seed, epoch)
    bs = min(batch_size, n)
    for b in range(start_batch, steps_per_epoch(n, batch_size)):
        index = perm[b * bs : (b + 1) * bs][rank::world_size]
        yield _to_device(take(data, index), device)


def sequential_batches(
    data: Data, batch_size: int, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
) -> Iterator[Batch]:
    """Every row once, in order, in batches (this rank's share of each: for evaluation)."""
    n = data_length(data)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(n, start + batch_size))[rank::world_size]
        if len(index) == 0:
            continue
        yield _to_device(take(data, index), device)


def random_batch(
    data: Data, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1, device: torch.device | None = None
) -> Batch:
    """``batch_size`` rows drawn at random without replacement by a generator seeded with
    ``seed`` (this rank's share ``rows[rank::world_size]`` of them), e.g. a critic's extra
    batch within one training step."""
    n = data_length(data)
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(batch_size, n)]
    return _to_device(take(data, index[rank::world_size]), device)


def _to_device(batch: Batch, device: torch.device | None) -> Batch:
    if device is None:
        return batch
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def batch_size_of(batch: Batch) -> int:
    return len(batch["images"])


class Prefetcher:
    """Prepares up to ``depth`` batches ahead in a background thread (index + copy to device
    overlap the training step; tensor indexing releases the GIL). Order is unchanged."""

    _END = object()

    def __init__(self, batches: Iterator[Batch], depth: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batches,), daemon=True)
        self._thread.start()

    def _run(self, batches: Iterator[Batch]) -> None:
        try:
            for batch in batches:
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._END)
        except BaseException as exc:  # surfaced in the consumer
            self._queue.put(exc)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def fingerprint(data: Data, max_rows: int = 1024) -> str:
    """A cheap identity of a dataset: shapes, dtypes and a hash of up to ``max_rows``
    evenly spaced rows (a resumed run checks it trains on the same data)."""
    h = hashlib.sha256()
    n = data_length(data)
    rows = np.unique(np.linspace(0, n - 1, num=min(n, max_rows)).round().astype(np.int64))
    index = torch.from_numpy(rows)
    for key in sorted(data):
        value = data[key]
        if value is None:
            continue
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            h.update(f"{tuple(value.shape)}{value.dtype}".encode())
            h.update(value[index.to(value.device)].detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr([value[i] for i in rows.tolist()]).encode())
    return h.hexdigest()[:32]


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for ``purpose`` (e.g. "validation-split", "epoch-3")
    derived from the user's seed."""
    digest = hashlib.sha256(f"genlab:{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def as_tensor_dict(
    images: torch.Tensor, labels: torch.Tensor | None = None, **extra: Sequence[Any] | torch.Tensor | None
) -> dict[str, Any]:
    """Assemble the data dict the trainer takes; None fields are left out."""
    out: dict[str, Any] = {"images": images}
    if labels is not None:
        out["labels"] = labels
    out.update({k: v for k, v in extra.items() if v is not None})
    return out
