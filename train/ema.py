"""Exponential moving average of a network's weights (Polyak averaging), the weights a run evaluates and ships.

After every optimizer step the average moves toward the trained weights: ``avg = d * avg + (1 - d) * w``, with
``d = decay * (1 - exp(-updates / warmup_steps))`` so that the first steps of a run from scratch do not drag the
average back to the random initialisation (``warmup_steps = 0``: ``d = decay`` from the first step, for a
fine-tune that starts from good weights). Integer buffers (BatchNorm's step counters) are copied, not averaged.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``model``'s state dict; starts equal to it."""

    def __init__(self, model: nn.Module, decay: float, warmup_steps: float = 0.0) -> None:
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.updates = 0
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if self.warmup_steps <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s current weights (one call per optimizer step)."""
        weight = 1.0 - self.current_decay()
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.weights[key].lerp_(value.detach(), weight)
            else:
                self.weights[key].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore an average saved by ``state_dict`` (the tensors are copied to this average's devices)."""
        missing = self.weights.keys() - state["weights"].keys()
        if missing:
            raise KeyError(f"the saved weight average lacks {sorted(missing)[0]}")
        for key, value in self.weights.items():
            value.copy_(state["weights"][key])
        self.updates = int(state["updates"])
