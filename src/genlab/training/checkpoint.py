"""Crash-safe training checkpoints: safetensors for tensors, one JSON file as the commit.

A checkpoint is written in this order, each file atomically (temp file, fsync, rename):

1. ``train-<step>-<id>.safetensors`` — network weights, EMA weights, optimiser tensors,
   torch RNG states;
2. ``best-<step>-<id>.safetensors`` — the weights kept as "best" (only when they changed);
3. ``checkpoint-<seq>.json`` — the **commit record**: step, epoch, position in the
   epoch, schedule, best validation loss, Python/NumPy RNG states, the config, and the
   names and random write ids of the two tensor files it uses.

Tensor files carry their write id in the safetensors metadata, and a commit is used only
if the files it names exist and carry the ids it expects. A crash before step 3 leaves
orphan tensor files and the previous commit untouched; older commits and unreferenced
files are deleted only *after* a new commit is in place (the newest ``keep`` commits are
kept). So at any moment the directory holds a complete, self-consistent checkpoint, and
:func:`load_latest` falls back to an older commit if the newest one is damaged.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import GenlabError
from ..io import atomic_write, read_json, write_json

FORMAT = "genlab-training-checkpoint"
FORMAT_VERSION = 1
_COMMIT_RE = re.compile(r"^checkpoint-(\d+)\.json$")
_TENSOR_RE = re.compile(r"^(train|best)-\d+-[0-9a-f]+\.safetensors$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the JSON record and the tensors it points to (on the CPU)."""

    path: Path
    step: int
    record: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    best_tensors: dict[str, torch.Tensor] | None = None

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors stored under ``prefix.`` with the prefix removed (e.g. ``"network"``)."""
        p = prefix + "."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}


@dataclass
class CheckpointStore:
    """Writes and finds checkpoints in ``directory`` (see the module docstring)."""

    directory: Path
    keep: int = 2
    _best_file: tuple[int, str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)

    # ------------------------------------------------------------------ writing
    def save(
        self,
        step: int,
        tensors: dict[str, torch.Tensor],
        record: dict[str, Any],
        *,
        best_step: int | None = None,
        best_tensors: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write one checkpoint and commit it; returns the commit file.

        ``best_tensors`` are written only when ``best_step`` differs from the best file
        already referenced by this store's last commit.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        write_id = uuid.uuid4().hex
        train_name = f"train-{step:09d}-{write_id[:12]}.safetensors"
        _save_tensors_durably(self.directory / train_name, tensors, {"write_id": write_id, "step": str(step)})
        best_file = None
        if best_step is not None and best_tensors is not None:
            best_file = self._best_file
            if best_file is None or best_file[0] != best_step or not (self.directory / best_file[1]).is_file():
                best_id = uuid.uuid4().hex
                best_name = f"best-{best_step:09d}-{best_id[:12]}.safetensors"
                _save_tensors_durably(
                    self.directory / best_name, best_tensors, {"write_id": best_id, "step": str(best_step)}
                )
                best_file = (best_step, best_name, best_id)
        best_entry = {"file": best_file[1], "write_id": best_file[2], "step": best_file[0]} if best_file else None
        seq = self._next_sequence()
        commit = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sequence": seq,
            "step": int(step),
            "train": {"file": train_name, "write_id": write_id},
            "best": best_entry,
            **record,
        }
        path = write_json(self.directory / f"checkpoint-{seq:08d}.json", commit)
        self._best_file = best_file  # only a committed best file may be reused
        self.prune()
        return path

    def prune(self) -> None:
        """Delete commits beyond the newest ``keep`` and every tensor/temp file they no longer use."""
        commits = self._commit_files()
        for _, path in commits[self.keep :]:
            path.unlink(missing_ok=True)
        referenced: set[str] = set()
        for _, path in commits[: self.keep]:
            try:
                rec = read_json(path)
                referenced.add(rec["train"]["file"])
                if rec.get("best"):
                    referenced.add(rec["best"]["file"])
            except (GenlabError, KeyError, TypeError):
                continue
        for entry in self.directory.iterdir():
            name = entry.name
            is_ours_tmp = name.startswith((".train-", ".best-", ".checkpoint-")) and name.endswith(".tmp")
            if (_TENSOR_RE.match(name) and name not in referenced) or is_ours_tmp:
                entry.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete every checkpoint (a fresh, not resumed, run starts from an empty folder)."""
        for _, path in self._commit_files():
            path.unlink(missing_ok=True)
        self._best_file = None
        if self.directory.is_dir():
            self.prune()

    # ------------------------------------------------------------------ reading
    def load_latest(self) -> Checkpoint | None:
        """The newest complete checkpoint, or None when the directory holds none.

        A damaged commit (unreadable JSON, a missing tensor file, a write-id mismatch,
        unreadable tensors) is skipped in favour of the next older one.
        """
        if not self.directory.is_dir():
            return None
        for _, path in self._commit_files():
            ckpt = _try_load(path)
            if ckpt is not None:
                if ckpt.record.get("best"):
                    b = ckpt.record["best"]
                    self._best_file = (int(b["step"]), b["file"], b["write_id"])
                return ckpt
        return None

    def _commit_files(self) -> list[tuple[int, Path]]:
        """Commit files, newest (highest sequence) first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            m = _COMMIT_RE.match(entry.name)
            if m:
                found.append((int(m.group(1)), entry))
        return sorted(found, reverse=True)

    def _next_sequence(self) -> int:
        commits = self._commit_files()
        return commits[0][0] + 1 if commits else 1


def load_latest(directory: str | os.PathLike) -> Checkpoint | None:
    """The newest complete checkpoint in ``directory`` (None if there is none)."""
    return CheckpointStore(Path(directory)).load_latest()


def _try_load(path: Path) -> Checkpoint | None:
    try:
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return None
        tensors = _read_checked(path.parent / record["train"]["file"], record["train"]["write_id"])
        best = None
        if record.get("best"):
            best = _read_checked(path.parent / record["best"]["file"], record["best"]["write_id"])
        return Checkpoint(path=path, step=int(record["step"]), record=record, tensors=tensors, best_tensors=best)
    except (GenlabError, KeyError, TypeError, ValueError, OSError):
        return None
    except Exception:  # safetensors raises its own error types for damaged files
        return None


def _read_checked(path: Path, write_id: str) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("write_id") != write_id:
            raise ValueError(f"{path.name}: write id does not match its commit")
        return {k: f.get_tensor(k) for k in f.keys()}


def _save_tensors_durably(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(flat, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:  # the bytes must be on disk before the rename publishes them
            os.fsync(f.fileno())

    atomic_write(path, write)


# ---------------------------------------------------------------------- optimiser state
def flatten_optimizer_state(state_dict: dict[str, Any], prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``prefix.<param>.<key>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for name, value in tensors.items():
        if name.startswith(p):
            param_id, key = name[len(p) :].split(".", 1)
            state.setdefault(int(param_id), {})[key] = value
    for param_id, entry in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}
