"""Health check of :class:`xaigan.guidance.XAIGuidance`: say when explaining D has stopped changing anything.

Two conditions, each counted over consecutive guidance calls and said once: nothing explained (every generated
sample scored real, e.g. a D ending in a sigmoid read as returning logits), and a mask constant over the batch
(the explanations carry no signal). Saying means a warning on the ``xaigan.guidance`` logger plus an event for
the run's log, or :class:`GuidanceHealthError` when strict.
"""

from __future__ import annotations

import copy
import logging

from torch import Tensor

from xaigan.errors import RunError

CHECKS = ("nothing-explained", "constant-mask")
logger = logging.getLogger("xaigan.guidance")


class GuidanceHealthError(RunError):
    """The guidance has been changing nothing for ``patience`` steps (raised instead of a warning when strict).

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> G, D = models.build("mlp")
        >>> guide = XAIGuidance("saliency", threshold=0.0, patience=1, strict=True)  # no sample is ever "fake"
        >>> guide(G(torch.randn(8, 100)), D)
        Traceback (most recent call last):
        ...
        xaigan.guidance.health.GuidanceHealthError: xAI guidance explained no sample for 1 consecutive steps: ...
    """


def _widen(seen: list[float] | None, scores: Tensor | None) -> list[float] | None:
    """The range ``[lo, hi]`` of D's outputs seen so far, widened by ``scores`` (unknown scores: unchanged)."""
    if scores is None or not scores.numel():
        return seen
    lo, hi = float(scores.min()), float(scores.max())
    return [lo, hi] if seen is None else [min(seen[0], lo), max(seen[1], hi)]


def _message(check: str, steps: int, seen: list[float] | None, context: dict) -> str:
    span = "were not scored" if seen is None else f"ranged over [{seen[0]:.4g}, {seen[1]:.4g}]"
    if check == "nothing-explained":
        return (
            f"xAI guidance explained no sample for {steps} consecutive steps: D scored every generated sample as "
            f"real (probability of real >= threshold {context['threshold']}); D's outputs {span}, read "
            f"as {context['kind']}s (d_output={context['d_output']!r}). A D ending in a sigmoid returns "
            "probabilities and needs d_output='prob' (or 'auto'); otherwise D may be accepting every generated "
            "sample. The guidance is changing nothing."
        )
    return (
        f"xAI guidance: the mask was constant over the batch for {steps} consecutive steps that explained samples "
        f"(D's outputs {span}): the {context['method']!r} explanations carry no signal (D's input "
        "gradient may be zero or its output saturated), so the guidance only rescales G's gradient uniformly. "
        "Check D, or try another method, target or normalize."
    )


class HealthCheck:
    """Streak counters per check (``steps``, D's output ``range`` over the streak, ``said``) and pending events."""

    def __init__(self, patience: int = 50, strict: bool = False) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be at least 1, got {patience!r}")
        self.patience = int(patience)
        self.strict = bool(strict)
        self.events: list[dict] = []
        self.state: dict[str, dict] = {c: {"steps": 0, "range": None, "said": False} for c in CHECKS}

    def update(self, n_explained: int, mask: Tensor, scores: Tensor | None, select_fake: bool, context: dict) -> None:
        """Count one guidance call; ``context`` holds ``threshold``, ``kind``, ``d_output``, ``method``."""
        if select_fake:
            self._streak("nothing-explained", n_explained == 0, scores, context)
        if n_explained:  # calls that explain nothing neither extend nor break a constant-mask streak
            self._streak("constant-mask", bool(mask.max() == mask.min()), scores, context)

    def _streak(self, check: str, hit: bool, scores: Tensor | None, context: dict) -> None:
        h = self.state[check]
        if not hit:
            h.update(steps=0, range=None)
            return
        h["steps"] += 1
        h["range"] = _widen(h["range"], scores)
        if h["steps"] < self.patience or h["said"]:
            return
        message = _message(check, h["steps"], h["range"], context)
        if self.strict:
            raise GuidanceHealthError(message)
        h["said"] = True
        logger.warning(message)
        self.events.append({"event": "xai_health", "check": check, "steps": h["steps"], "message": message})

    def drain(self) -> list[dict]:
        events, self.events = self.events, []
        return events

    def state_dict(self) -> dict:
        return copy.deepcopy(self.state)

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(CHECKS):
            raise ValueError(f"guidance health state must hold {CHECKS}, got {sorted(state)}")
        self.state = {
            c: {"steps": int(state[c]["steps"]), "range": copy.copy(state[c]["range"]), "said": bool(state[c]["said"])}
            for c in CHECKS
        }
