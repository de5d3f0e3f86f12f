"""Saliency: the absolute gradient of D's verdict with respect to each pixel."""

from __future__ import annotations

from torch import Tensor, nn

from xaigan.explain._base import input_gradients


def saliency(model: nn.Module, x: Tensor, abs: bool = True, internal_batch_size: int | None = None) -> Tensor:
    """``|d out / dx|`` for the whole batch in one backward pass (captum's ``Saliency`` with ``abs=True``).

    ``abs=False`` returns the signed gradient. ``internal_batch_size`` bounds the samples per pass. Draws no
    random numbers in eval mode (train mode: dropout draws from torch's global RNG).
    """
    grads = input_gradients(model, x, internal_batch_size)
    return grads.abs() if abs else grads
