"""Saliency: the absolute gradient of D's verdict with respect to each pixel."""

from __future__ import annotations

from torch import Tensor, nn

from xaigan.explain._base import input_gradients


def saliency(model: nn.Module, x: Tensor, abs: bool = True, internal_batch_size: int | None = None) -> Tensor:
    """``|d out / dx|`` for the whole batch in one backward pass (captum's ``Saliency`` with ``abs=True``).

    Draws no random numbers in eval mode (train mode: dropout draws from torch's global RNG).

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images to explain.
        abs: the absolute gradient (default), or the signed one.
        internal_batch_size: the most samples per backward pass (all at once by default).

    Returns:
        The maps, shaped like ``x``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> maps = saliency(D.eval(), torch.rand(4, 1, 32, 32) * 2 - 1)
        >>> maps.shape, bool((maps >= 0).all())
        (torch.Size([4, 1, 32, 32]), True)
    """
    grads = input_gradients(model, x, internal_batch_size)
    return grads.abs() if abs else grads
