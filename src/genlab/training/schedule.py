"""Learning-rate schedules as pure functions of the step, so resuming needs only the step.

The learning rate used for optimiser step ``s`` (0-based: the ``s + 1``-th update) is
``lr * lr_factor(s, ...)``:

* linear warm-up: ``(s + 1) / warmup_steps`` for ``s < warmup_steps``
* then "cosine": ``m + (1 - m) * (1 + cos(pi * p)) / 2`` with
  ``p = (s - warmup_steps) / (total_steps - warmup_steps)`` and ``m = min_lr_ratio``,
  or "constant": 1.
"""

from __future__ import annotations

import math

import torch


def lr_factor(
    step: int, *, warmup_steps: int, total_steps: int, schedule: str = "cosine", min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (see module docstring)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}")
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LRSchedule:
    """Applies :func:`lr_factor` to every parameter group of some optimisers.

    Each group's base rate is kept in ``group["initial_lr"]`` (set on first use, saved
    with the optimiser state), so groups with their own rates (e.g. a GAN's two
    networks) are all scaled by the same factor.
    """

    def __init__(
        self,
        optimizers: list[torch.optim.Optimizer],
        *,
        warmup_steps: int,
        total_steps: int,
        schedule: str = "cosine",
        min_lr_ratio: float = 0.0,
    ) -> None:
        self.optimizers = optimizers
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.min_lr_ratio = float(min_lr_ratio)
        for opt in optimizers:
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def factor(self, step: int) -> float:
        return lr_factor(
            step,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
            schedule=self.schedule,
            min_lr_ratio=self.min_lr_ratio,
        )

    def apply(self, step: int) -> float:
        """Set the rates for optimiser step ``step``; returns the first group's rate."""
        f = self.factor(step)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * f
        return float(self.optimizers[0].param_groups[0]["lr"]) if self.optimizers else 0.0
