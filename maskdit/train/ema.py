"""Exponential moving average of a network's weights, kept in float32."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Shadow copy of every floating-point parameter and buffer, updated after each optimizer step.

    ``warmup=True`` uses decay_n = min(decay, (1 + n) / (10 + n)) (n = updates so far), so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), warmup
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: value.detach().to(torch.float32).clone()
            for name, value in model.state_dict().items()
            if value.is_floating_point()
        }

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        state = model.state_dict()
        for name, shadow in self.shadow.items():
            shadow.lerp_(state[name].detach().to(torch.float32), 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes)."""
        state = model.state_dict()
        for name, shadow in self.shadow.items():
            state[name].copy_(shadow.to(state[name].dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow) - set(tensors)
        unexpected = set(tensors) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name, value in tensors.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA tensor {name}: shape {tuple(value.shape)}, expected {tuple(self.shadow[name].shape)}")
            self.shadow[name].copy_(value)
        self.updates = int(updates)
