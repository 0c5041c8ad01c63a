"""Exponential moving average of a network's weights."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copy of a network's full state dict.

    After every optimiser step, each floating-point parameter is updated as
    ``shadow = decay * shadow + (1 - decay) * param``; buffers (e.g. BatchNorm running
    statistics) are copied as they are. The shadow starts as a copy of the weights.

    Given the optimiser ``step`` (0-based count of earlier updates), the decay warms up as
    ``min(decay, (1 + step) / (10 + step))`` (TensorFlow's ``num_updates`` rule): a
    0.999 average would otherwise keep mostly the random initial weights for the first
    few thousand steps, which is all a short run has.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in network.state_dict().items()}
        self._param_names = [name for name, _ in network.named_parameters()]

    def decay_at(self, step: int | None) -> float:
        """The decay used for the update after optimiser step ``step`` (None: no warm-up)."""
        return self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, network: nn.Module, step: int | None = None) -> None:
        decay = self.decay_at(step)
        state = network.state_dict()
        averaged = [k for k in self._param_names if state[k].is_floating_point()]
        shadows = [self.shadow[k] for k in averaged]
        currents = [state[k].detach() for k in averaged]
        if shadows:
            torch._foreach_lerp_(shadows, currents, 1.0 - decay)
        param_set = set(averaged)
        for key, value in state.items():
            if key not in param_set:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, a state dict of the network."""
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for key, value in self.shadow.items():
            value.copy_(state[key])

    def copy_to(self, network: nn.Module) -> None:
        """Overwrite the network's weights with the averages."""
        network.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def applied_to(self, network: nn.Module) -> Iterator[nn.Module]:
        """Temporarily put the averaged weights into ``network`` (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in network.state_dict().items()}
        network.load_state_dict(self.shadow)
        try:
            yield network
        finally:
            network.load_state_dict(backup)
