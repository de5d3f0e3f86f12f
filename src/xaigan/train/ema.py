"""An exponential moving average of the generator's weights (``g_ema``), the generator that gets evaluated.

A GAN's generator moves around its equilibrium: its FID swings by ±5-7 between evaluations five epochs apart, as
much as the spread between seeds (docs/metrics.md), so a final FID says as much about where the run stopped as
about the method. Averaging the weights over the last steps (Yazıcı et al., "The unusual effectiveness of averaging
in GAN training", ICLR 2019) is the usual remedy. Training is unchanged: the average is updated after each step from
G's new weights and is only read for samples and evaluation.

The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` after the t-th update, so that the first steps' random
weights do not linger in the average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def ramped_decay(decay: float, updates: int) -> float:
    """The decay of the ``updates``-th update (1-based)."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """A copy of ``net`` whose parameters follow ``avg <- d * avg + (1 - d) * param`` after every :meth:`update`
    (``d`` from :func:`ramped_decay`); buffers (BatchNorm statistics) are copied, not averaged."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        self._averaged = list(self.module.parameters())  # load_state_dict copies into these same tensors

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        d = ramped_decay(self.decay, self.updates)
        torch._foreach_lerp_(self._averaged, list(net.parameters()), 1.0 - d)
        for mine, theirs in zip(self.module.buffers(), net.buffers()):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
