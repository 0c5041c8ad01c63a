"""What a training run's state is, and what callbacks see of the trainer.

Both :mod:`.trainer` and :mod:`.callbacks` import this module (and neither imports the
other), so the two stay free of an import cycle.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from .config import TrainingConfig

#: how the weights kept at the end of training are chosen (``network.selection``)
SELECTIONS = ("val_loss", "metric", "last")


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs completed (= index of the current epoch)
    batch_in_epoch: int = 0  # batches of the current epoch done
    #: the selection score of the kept "best" weights (lower is better): the validation loss
    #: or ``network.selection_metric``; None before the first selection or with "last"
    best_score: float | None = None
    #: the best validation loss when selecting on it (else None)
    best_val_loss: float | None = None
    best_step: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    last_val_step: int | None = None  # step of the last selection (validation or metric)
    epoch_loss_sum: float = 0.0
    epoch_count: int = 0
    epoch_logs_sum: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["best_val_loss"] = finite_or_none(self.best_val_loss)
        d["best_score"] = finite_or_none(self.best_score)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in d.items() if k in names}
        if "best_score" not in d:  # checkpoints written before selection existed selected on val loss
            values["best_score"] = d.get("best_val_loss")
        return cls(**values)


class TrainerView(Protocol):
    """What a :class:`~genlab.training.Callback` (and ``network.selection_metric``) may use
    of the trainer running it."""

    config: TrainingConfig
    state: TrainState
    #: the bare network (not the DDP/compiled wrapper)
    network: nn.Module

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        ...

    def evaluation(self, purpose: str = "evaluation") -> contextlib.AbstractContextManager[nn.Module]:
        """The network with the kept (EMA) weights, eval mode, no grad, a forked seeded RNG."""
        ...


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
