"""Reshaping G's gradient at the image: an identity in the forward pass whose backward pass multiplies."""

from __future__ import annotations

import torch
from torch import Tensor


class _Guide(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * (1 + ctx.alpha * mask), None, None


def broadcasts(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def apply(x: Tensor, mask: Tensor | float, alpha: float = 0.2) -> Tensor:
    """Identity forward; backward multiplies the incoming gradient by ``1 + alpha * mask`` (the paper's rule).

    Args:
        x: the generated images (part of G's graph).
        mask: detached, broadcast to ``x``'s shape (one map per sample, one map for all, a scalar...).
        alpha: the strength; ``alpha == 0`` returns ``x`` itself, so gradients stay bit-identical.

    Returns:
        ``x``'s values, with the reshaping backward pass attached.

    Raises:
        ValueError: ``mask`` does not broadcast to ``x``.

    Example:
        >>> import torch
        >>> x = torch.ones(2, 1, 1, 2, requires_grad=True)
        >>> mask = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)  # the second sample's mask is 1
        >>> apply(x, mask, alpha=0.5).sum().backward()
        >>> x.grad.flatten().tolist()
        [1.0, 1.0, 1.5, 1.5]
    """
    mask = torch.as_tensor(mask).detach().to(device=x.device, dtype=x.dtype)
    if not broadcasts(mask.shape, x.shape):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x.shape)}")
    if alpha == 0:
        return x
    return _Guide.apply(x, mask, float(alpha))


class _Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: Tensor) -> Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def scale(x: Tensor, factor: Tensor) -> Tensor:
    """Identity forward; backward multiplies the incoming gradient by ``factor`` (the uses other than amplify).

    Args:
        x: the generated images (part of G's graph).
        factor: the multiplier, detached, broadcast to ``x``'s shape.

    Returns:
        ``x``'s values, with the scaling backward pass attached.

    Raises:
        ValueError: ``factor`` does not broadcast to ``x``.

    Example:
        >>> import torch
        >>> x = torch.ones(2, 1, 1, 2, requires_grad=True)
        >>> scale(x, torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)).sum().backward()
        >>> x.grad.flatten().tolist()
        [1.0, 1.0, 0.0, 0.0]
    """
    factor = torch.as_tensor(factor).detach().to(device=x.device, dtype=x.dtype)
    if not broadcasts(factor.shape, x.shape):
        raise ValueError(f"factor of shape {tuple(factor.shape)} does not broadcast to {tuple(x.shape)}")
    return _Scale.apply(x, factor)
