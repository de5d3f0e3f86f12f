"""Shared plumbing for the explainers: the explained model, D protection, batched input gradients.

Every explainer receives an :class:`ExplainedModel` (D, optionally preceded by a transform and followed by a
sigmoid) that maps ``(N, C, H, W)`` to ``(N, 1)``, and explains output column 0 for each sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

TARGETS = ("prob", "logit")
MODES = ("eval", "train")


class ExplainedModel(nn.Module):
    """``x -> sigmoid(D(T(x)))`` (``target="prob"``) or ``D(T(x))`` (``"logit"``), shaped ``(N, 1)``.

    The sigmoid is its own ``nn.Sigmoid`` module so that DeepLIFT applies its rescale rule to it, as it did to the
    paper's D, whose last layer was a Sigmoid. ``transform`` (e.g. DiffAugment) is applied first, so explanations
    are of ``D o T`` with respect to the un-augmented image.
    """

    def __init__(self, d: nn.Module, target: str = "prob", transform: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.d = d
        self.target = target
        self.transform = transform  # registered as a submodule when it is an nn.Module
        self.sigmoid = nn.Sigmoid() if target == "prob" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.transform is not None:
            x = self.transform(x)
        out = self.d(x).view(-1, 1)
        if self.sigmoid is not None:
            out = self.sigmoid(out)
        return out


@contextlib.contextmanager
def protected(model: nn.Module, mode: str = "eval") -> Iterator[nn.Module]:
    """Run an explanation without leaving any trace on ``model``.

    Inside the block the model is in ``mode`` (``"eval"``: dropout off, BatchNorm uses running statistics;
    ``"train"``: as the original xAI-GAN explained, dropout on and BatchNorm using the batch's statistics) and its
    parameters do not require gradients (so no parameter gradient is computed or accumulated, which is also
    faster). On exit every module's ``training`` flag, every parameter's ``requires_grad`` and ``.grad`` (the
    same tensor object) and every buffer's value (BatchNorm running statistics, ``num_batches_tracked``, spectral
    norm vectors...) are restored, whatever happened inside.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    flags = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(mode == "train")
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
        for p, req, grad in zip(params, requires, grads):
            p.requires_grad_(req)
            p.grad = grad
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def chunks(n: int, size: int | None) -> Iterator[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``size`` (all at once when ``size`` is None)."""
    step = n if not size or size <= 0 else int(size)
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))


def input_gradients(model: nn.Module, x: Tensor, internal_batch_size: int | None = None) -> Tensor:
    """``d model(x)[:, 0] / dx`` for every sample, in chunks of ``internal_batch_size`` samples.

    The gradient of the summed output: each sample's gradient is its own as long as samples do not interact
    (true in eval mode; in train mode BatchNorm couples the samples of a chunk through the batch statistics).
    """
    out = torch.empty_like(x)
    with torch.enable_grad():
        for sl in chunks(x.shape[0], internal_batch_size):
            xi = x[sl].detach().requires_grad_(True)
            y = model(xi)[:, 0]
            (g,) = torch.autograd.grad(y.sum(), xi)
            out[sl] = g
    return out
