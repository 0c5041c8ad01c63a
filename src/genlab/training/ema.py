"""Exponential moving average of a network's weights."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copy of a module's full state dict.

    After every optimiser step, each floating-point parameter is updated as
    ``shadow = decay * shadow + (1 - decay) * param``; buffers (e.g. BatchNorm running
    statistics) are copied as they are. The shadow starts as a copy of the weights.

    Given the optimiser ``step`` (0-based count of earlier updates), the decay warms up as
    ``min(decay, (1 + step) / (10 + step))`` (TensorFlow's ``num_updates`` rule): a
    0.999 average would otherwise keep mostly the random initial weights for the first
    few thousand steps, which is all a short run has.

    The trainer averages only ``network.ema_module()`` when the network defines it (a
    GAN's generator): pass that sub-module here.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in network.state_dict().items()}
        param_names = {name for name, _ in network.named_parameters(remove_duplicate=False)}
        self._averaged = [k for k in self.shadow if k in param_names and self.shadow[k].is_floating_point()]
        averaged = set(self._averaged)
        self._copied = [k for k in self.shadow if k not in averaged]
        # the shadow tensors are only ever updated in place: their lists can be kept
        self._averaged_shadow = [self.shadow[k] for k in self._averaged]
        self._copied_shadow = [self.shadow[k] for k in self._copied]
        slots = _state_slots(network, list(self.shadow))
        self._slots = None if slots is None else ([slots[k] for k in self._averaged], [slots[k] for k in self._copied])
        self._network_id = id(network)

    def decay_at(self, step: int | None) -> float:
        """The decay used for the update after optimiser step ``step`` (None: no warm-up)."""
        return self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, network: nn.Module, step: int | None = None) -> None:
        """Move the averages towards ``network``'s weights (fused updates, no host sync)."""
        averaged, copied = self._live(network)
        decay = self.decay_at(step)
        if averaged:
            torch._foreach_lerp_(self._averaged_shadow, averaged, 1.0 - decay)
        if copied:
            torch._foreach_copy_(self._copied_shadow, copied)

    def _live(self, network: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The network's current (averaged, copied) tensors, read straight from the modules'
        parameter/buffer dicts (``state_dict()`` would walk every module at every step)."""
        if self._slots is not None and id(network) == self._network_id:
            return [table[leaf] for table, leaf in self._slots[0]], [table[leaf] for table, leaf in self._slots[1]]
        state = network.state_dict()
        return [state[k] for k in self._averaged], [state[k] for k in self._copied]

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


def _state_slots(network: nn.Module, keys: list[str]) -> dict[str, tuple[dict, str]] | None:
    """For each state-dict key, the (module's ``_parameters`` or ``_buffers`` dict, name)
    holding it; None when a key is not a plain parameter or buffer (custom state hooks).

    The dicts are looked up again at every update, so a module that replaces a parameter
    or buffer object (``module.to``, reassignment) is still read correctly."""
    modules = dict(network.named_modules(remove_duplicate=False))
    slots: dict[str, tuple[dict, str]] = {}
    for key in keys:
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if module is None:
            return None
        if leaf in module._parameters and module._parameters[leaf] is not None:
            slots[key] = (module._parameters, leaf)
        elif leaf in module._buffers and module._buffers[leaf] is not None:
            slots[key] = (module._buffers, leaf)
        else:
            return None
    return slots
