"""What a trainer codes against (:class:`Guidance`, and the optional :class:`Scheduled`, :class:`SharedStep`,
:class:`LossWeighting` and :class:`CountsRegimes`), and how a guidance's settings are recorded (:func:`describe`)."""

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


@runtime_checkable
class Scheduled(Protocol):
    """A guidance whose strength changes over training: the trainer calls ``at_epoch(epoch)`` when a guided epoch
    starts and logs ``alpha_now``, the strength in use.

    Example:
        >>> guide = XAIGuidance("saliency", alpha=0.2, schedule="ramp-up", start_epoch=25, end_epoch=50)
        >>> isinstance(guide, Scheduled)
        True
        >>> guide.at_epoch(25)
        >>> guide.alpha_now
        0.008
    """

    alpha_now: float

    def at_epoch(self, epoch: int) -> None: ...


@runtime_checkable
class SharedStep(Protocol):
    """A guidance that G's step can compute from its own pass of D: if ``shares_step(D)``, the step calls
    ``scale_gradient(grad, fake, D, scores, jacobian)`` with G's gradient at the image instead of ``guide(fake, D)``.

    Example:
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> XAIGuidance("saliency", explain_mode="step").shares_step(D)
        True
    """

    def shares_step(self, D: nn.Module) -> bool: ...
    def scale_gradient(self, grad: Tensor, fake: Tensor, D: nn.Module, scores: Tensor, jacobian: Tensor) -> Tensor: ...


@runtime_checkable
class LossWeighting(Protocol):
    """A guidance that weights each sample's share of G's loss: ``loss_weights()`` after ``guide(fake, D)`` gives one
    weight per sample, or None for plain weights.

    Example:
        >>> guide = XAIGuidance("saliency", use="weight")
        >>> isinstance(guide, LossWeighting), guide.loss_weights()  # None before the first call
        (True, None)
    """

    def loss_weights(self) -> Tensor | None: ...


@runtime_checkable
class CountsRegimes(Protocol):
    """A guidance that counts how many of its calls explained none, some or all of the batch (``regimes()``, written
    to the run's summary).

    Example:
        >>> isinstance(XAIGuidance("saliency"), CountsRegimes)
        True
    """

    def regimes(self) -> dict: ...


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
