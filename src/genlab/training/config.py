"""The resolved settings of one training run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GenlabError
from ..models.validation import check_choice, check_float, check_int

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainingConfig:
    """Everything :class:`~genlab.training.Trainer` needs, with no "preset" left to resolve.

    Field names equal the neural models' ``__init__`` parameters, so an error about a
    field names the argument the user passed.

    Length: training runs ``epochs`` passes over the training split, or ``max_steps``
    optimiser steps, whichever ends first (at least one must be set). ``batch_size`` is the
    global batch: under ``torchrun`` it is split across the processes.
    """

    epochs: int | None = 10
    max_steps: int | None = None
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    #: the cosine schedule decays to ``min_lr_ratio * lr``
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    ema_decay: float | None = None
    val_fraction: float = 0.1
    patience: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    num_workers: int = 0
    random_state: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    sample_every: int | None = None
    #: a CSV/TensorBoard row of running means every ``log_every`` steps (plus one per epoch)
    log_every: int = 50

    def validate(self) -> "TrainingConfig":
        """Check every field; raise :class:`GenlabError` naming the bad one. Returns self."""
        if self.epochs is None and self.max_steps is None:
            raise GenlabError("set epochs or max_steps: training needs an end")
        if self.epochs is not None:
            check_int("epochs", self.epochs, minimum=1)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_float("lr", self.lr, minimum=0.0, exclusive=True)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_float("min_lr_ratio", self.min_lr_ratio, minimum=0.0, maximum=1.0)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, minimum=0.0, exclusive=True)
        if self.ema_decay is not None:
            check_float("ema_decay", self.ema_decay, minimum=0.0, exclusive=True)
            if not self.ema_decay < 1.0:
                raise GenlabError(f"ema_decay={self.ema_decay} must be < 1 (e.g. 0.999), or None for no EMA")
        check_float("val_fraction", self.val_fraction, minimum=0.0)
        if not self.val_fraction < 1.0:
            raise GenlabError(f"val_fraction={self.val_fraction} must be < 1 (0 = no validation split)")
        if self.patience is not None:
            check_int("patience", self.patience, minimum=1)
            if self.val_fraction == 0:
                raise GenlabError("patience (early stopping) needs a validation split: set val_fraction > 0")
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.compile, bool):
            raise GenlabError(f"compile={self.compile!r} must be True or False")
        check_int("num_workers", self.num_workers, minimum=0)
        check_int("random_state", self.random_state, minimum=0)
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            self.checkpoint_dir = str(self.checkpoint_dir)
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every, minimum=1)
            if self.checkpoint_dir is None:
                raise GenlabError("checkpoint_every needs checkpoint_dir (where to write the checkpoints)")
        if self.sample_every is not None:
            check_int("sample_every", self.sample_every, minimum=1)
            if self.checkpoint_dir is None:
                raise GenlabError("sample_every needs checkpoint_dir (where to write the sample grids)")
        check_int("log_every", self.log_every, minimum=1)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingConfig":
        """Build from a dict, ignoring unknown keys (checkpoints of newer versions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: "auto" = bfloat16 on CUDA, else
    none (float32); "bf16" = bfloat16 anywhere; "fp32" = none."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None
