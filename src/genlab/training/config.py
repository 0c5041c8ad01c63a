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


_SAME = object()


def _field(default: Any, help: str, *, model_default: Any = _SAME, model: bool = True, nullable: bool = False) -> Any:
    """A config field with its one-line ``help``; ``model_default`` is the default of the
    neural models' ``__init__`` parameter when it differs (None = "the preset's value");
    ``model=False``: not a model parameter; ``nullable``: the model parameter also takes None."""
    model_default = default if model_default is _SAME else model_default
    meta = {"help": help, "model": model, "model_default": model_default, "nullable": nullable or model_default is None}
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainingConfig:
    """Everything :class:`~genlab.training.Trainer` needs, with no "preset" left to resolve.

    Field names equal the neural models' ``__init__`` parameters, so an error about a
    field names the argument the user passed. This class is the one list of the training
    parameters: the neural models' signatures, ``TRAINING_PARAMS`` and their documentation
    are built from its fields (see :func:`model_training_fields`).

    Length: training runs ``epochs`` passes over the training split, or ``max_steps``
    optimiser steps, whichever ends first (at least one must be set). ``batch_size`` is the
    global batch: under ``torchrun`` it is split across the processes.
    """

    epochs: int | None = _field(
        10,
        "Training length in passes over the training split (None = the preset's; setting only max_steps trains exactly that many steps).",
        model_default=None,
    )
    max_steps: int | None = _field(
        None, "Training length in optimiser steps; training ends at whichever of epochs and max_steps comes first."
    )
    batch_size: int = _field(64, "Global mini-batch size (split across processes under torchrun).")
    optimizer: str = _field("adam", 'One of "adam", "adamw", "sgd" (SGD uses momentum 0.9).')
    lr: float = _field(1e-3, "Peak learning rate (None = the preset's).", model_default=None)
    weight_decay: float = _field(0.0, "Weight decay of the optimiser.")
    warmup_steps: int = _field(
        0, "Linear warm-up steps (None = the preset's, at most 10% of the run).", model_default=None
    )
    lr_schedule: str = _field(
        "cosine", 'After warm-up: "cosine" decay to min_lr_ratio * lr over the run, or "constant".'
    )
    #: the cosine schedule decays to ``min_lr_ratio * lr``
    min_lr_ratio: float = _field(0.0, "", model=False)
    grad_clip: float | None = _field(None, "Clip the global gradient norm to this value (None = no clipping).")
    ema_decay: float | None = _field(
        None, "Keep an exponential moving average of the weights (e.g. 0.999) and sample with it."
    )
    val_fraction: float = _field(
        0.1,
        "Share of the training images held out (fixed seed) for a validation loss each epoch; the model ends with the weights of the best validation loss (or the family's selection metric). 0 = off.",
    )
    patience: int | None = _field(
        None, "Stop after this many epochs without a better validation loss or selection metric (None = off)."
    )
    device: str = _field("auto", '"auto", "cpu", "cuda", "cuda:1", "mps".')
    precision: str = _field("auto", '"auto" (bfloat16 autocast on CUDA, float32 elsewhere), "fp32" or "bf16".')
    compile: bool = _field(False, "torch.compile the network (faster on GPU after a slow first step).")
    num_workers: int = _field(
        0,
        "Batches prepared ahead in a background thread (0 = in the training thread; the data is in memory, so this matters only on fast accelerators).",
    )
    random_state: int = _field(
        0,
        "Seed of initialisation, data order, validation split and the training noise (None = a fresh one).",
        nullable=True,
    )
    checkpoint_dir: str | None = _field(
        None, "Folder for checkpoints, metrics.csv and sample grids (None = none written)."
    )
    checkpoint_every: int | None = _field(
        None,
        "Also checkpoint every this many steps (checkpoints are always written at the end of each epoch and of training when checkpoint_dir is set).",
    )
    sample_every: int | None = _field(
        None, "Write a sample grid PNG into checkpoint_dir/samples every this many epochs."
    )
    #: a CSV/TensorBoard row of running means every ``log_every`` steps (plus one per epoch)
    log_every: int = _field(50, "", model=False)

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


def model_training_fields() -> tuple[dataclasses.Field, ...]:
    """The :class:`TrainingConfig` fields that every neural model's ``__init__`` takes, in
    signature order; ``field.metadata`` holds ``"help"`` and ``"model_default"``."""
    return tuple(f for f in dataclasses.fields(TrainingConfig) if f.metadata.get("model", True))
