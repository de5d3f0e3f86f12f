"""What a trainer codes against (:class:`Guidance`: a guidance of your own implements it) and how a guidance's
settings are recorded (:func:`describe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Guidance(Protocol):
    """What a trainer calls on an xAI guidance (implemented by :class:`XAIGuidance`).

    ``guide(fake, D, scores)``: ``fake`` with G's gradient at it reshaped (``scores``: D's raw outputs on ``fake``
    if already known); ``active(epoch)``: used in this 0-based epoch?; ``stats``: numbers about the last call, for
    logging; ``drain_events()``: events (health warnings) since the last drain, clearing them; ``state_dict()`` /
    ``load_state_dict()``: JSON-able state so that a resumed run behaves and counts the same;
    ``explain_maps(x, D)``: detached explanations of every sample of ``x`` (heat-map figures).

    The trainer's further parts (a strength scheduled per epoch, the saliency computed from G's own pass of D,
    per-sample loss weights, regime counts) are :class:`XAIGuidance`'s: a subclass keeps them.

    Example:
        >>> isinstance(XAIGuidance("saliency"), Guidance)
        True
    """

    stats: dict

    def __call__(self, fake: Tensor, D: nn.Module, scores: Tensor | None = None) -> Tensor: ...
    def active(self, epoch: int) -> bool: ...
    def drain_events(self) -> list[dict]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def explain_maps(self, x: Tensor, D: nn.Module, batch: Tensor | None = None) -> Tensor: ...


def describe(value: object) -> object:
    """``value`` as JSON can hold it: tensors as their shapes, paths as strings, callables by name."""
    if isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return getattr(value, "__name__", type(value).__name__)
