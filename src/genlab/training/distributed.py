"""Data-parallel training with PyTorch's own engine (``torchrun`` + DistributedDataParallel).

Launch any genlab training under ``torchrun --nproc_per_node=K ...``: the trainer sees
``WORLD_SIZE > 1`` in the environment, joins the process group (gloo on CPU, NCCL on
CUDA, one GPU per process by ``LOCAL_RANK``), wraps the network in DDP, gives each
process its share of every batch, averages what it logs, and lets only rank 0 write
files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import GenlabError


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True on rank 0, or when not distributed: the process that should write files."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


@dataclass
class DistributedContext:
    """Rank, world size and device of this process; a no-op context when world_size == 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> "DistributedContext":
        """Join the process group when launched by torchrun (WORLD_SIZE > 1).

        ``device`` is the requested device; on CUDA each process takes ``cuda:LOCAL_RANK``.
        """
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            local = int(os.environ.get("LOCAL_RANK", rank))
            return cls(rank, world, local, _rank_device(device, local), owns_group=False)
        world = env_world_size()
        if world <= 1:
            return cls(device=device)
        if not dist.is_available():
            raise GenlabError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", rank))
        dev = _rank_device(device, local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        try:
            dist.init_process_group(**kwargs)
        except TypeError:  # torch < 2.3 has no device_id argument
            kwargs.pop("device_id", None)
            dist.init_process_group(**kwargs)
        return cls(rank, world, local, dev, owns_group=True)

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (in place, returned); identity when not distributed."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (``[obj]`` when not distributed)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type == "cuda":
        if device.index is not None and env_world_size() > 1 and device.index != local_rank:
            raise GenlabError(
                f"device={str(device)!r} conflicts with torchrun's LOCAL_RANK={local_rank}; use device='cuda' or 'auto'"
            )
        visible = torch.cuda.device_count()
        if local_rank >= visible:  # e.g. --nproc_per_node=2 on a one-GPU machine under device="auto"
            raise GenlabError(
                f"torchrun's LOCAL_RANK={local_rank} has no GPU: {visible} CUDA device(s) visible, one process per GPU "
                f"(--nproc_per_node={visible}), or device='cpu' to train the processes on the CPU (gloo)"
            )
        return torch.device("cuda", local_rank)
    return device
