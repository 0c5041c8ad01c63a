"""Hooks into the training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .state import TrainerView


class Callback:
    """Override any of these; ``trainer.state`` holds step/epoch/losses, ``trainer.network``
    the network, ``trainer.is_main`` whether this process may write files.

    Callbacks run on every process (under torchrun), after the step's checkpoint
    (``on_step_end``) and before the epoch's checkpoint (``on_epoch_end``). They see the
    trainer through :class:`~genlab.training.state.TrainerView` (so this module does not
    import the trainer).
    """

    def on_train_start(self, trainer: TrainerView) -> None: ...

    def on_step_end(self, trainer: TrainerView) -> None: ...

    def on_epoch_end(self, trainer: TrainerView) -> None: ...

    def on_train_end(self, trainer: TrainerView) -> None: ...


class SampleGridCallback(Callback):
    """Every ``every`` epochs, draw images with ``sample_fn()`` and save them as
    ``<directory>/samples/epoch-<NNNN>.png`` (rank 0 only).

    ``sample_fn`` returns uint8 (n, C, H, W) images; it runs inside
    :meth:`Trainer.evaluation` (kept weights — EMA when enabled —, eval mode, no grad, a
    forked fixed-seed RNG, so training's random stream is not disturbed).
    """

    def __init__(self, sample_fn: Callable[[], torch.Tensor], every: int, directory: str | Path) -> None:
        self.sample_fn = sample_fn
        self.every = int(every)
        self.directory = Path(directory) / "samples"

    def on_epoch_end(self, trainer: TrainerView) -> None:
        epoch = trainer.state.epoch  # epochs completed
        if epoch % self.every or not trainer.is_main:
            return
        from ..images import save_grid

        with trainer.evaluation("samples"):
            images = self.sample_fn()
        self.directory.mkdir(parents=True, exist_ok=True)
        save_grid(images, self.directory / f"epoch-{epoch:04d}.png")


class StopAfterSteps(Callback):
    """Raise ``KeyboardInterrupt`` once ``steps`` optimiser steps are done: simulates a
    killed process (used by the resume tests and handy for quick smoke runs)."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_step_end(self, trainer: TrainerView) -> None:
        if trainer.state.step >= self.steps:
            raise KeyboardInterrupt(f"stopped after step {trainer.state.step}")
