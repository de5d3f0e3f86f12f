"""One call explains a batch: :func:`explain` runs a registered explainer on D, protected and in the precision
asked for.

RNG: in eval mode saliency, input-x-gradient, integrated-gradients, deeplift and deeplift-shap draw no random
numbers; smoothgrad and lime draw from their ``generator`` argument or else torch's global RNG; in train mode
dropout draws from the global RNG too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from xaigan.explain._base import ExplainedModel, protected
from xaigan.explain.catalog import get
from xaigan.settings import PRECISIONS


def explain(
    method: str,
    D: nn.Module,
    x: Tensor,
    /,
    *,
    target: str = "output",
    d_output: str = "auto",
    mode: str = "auto",
    transform: Callable[[Tensor], Tensor] | None = None,
    batch: Tensor | None = None,
    precision: str = "fp32",
    **kwargs,
) -> Tensor:
    """Explain D's verdict on every image of ``x`` with ``method``; returns detached maps shaped like ``x``.

    D is left as it was found (see :func:`protected`). The first three arguments are positional-only, so a
    method's own ``method=`` (integrated-gradients) can be passed.

    Args:
        method: an explainer name (:func:`available`).
        D: the discriminator: images ``(B, C, H, W)`` in [-1, 1] to one score per sample.
        x: the images to explain.
        target: ``"output"`` (what D returns, as captum does; default), ``"prob"`` (probability of real) or
            ``"logit"``.
        d_output: what D returns, ``"auto"`` (a final ``nn.Sigmoid`` means ``"prob"``), ``"logit"`` or ``"prob"``.
        mode: ``"auto"`` (default: ``"batch"`` for a BatchNorm D, else ``"eval"``), ``"eval"``, ``"train"`` or
            ``"batch"`` (BatchNorm with the statistics of ``batch``; see :func:`xaigan.explain.resolve_mode`).
        transform: a callable applied before D (e.g. DiffAugment); the explanation is then of
            ``D(transform(x))`` with respect to ``x``.
        batch: the batch whose BatchNorm statistics ``mode="batch"`` uses (default ``x``).
        precision: ``"fp32"``, or ``"bf16"``: D's matrix products (and DeepLIFT's transposed ones) under bf16
            autocast, with fp32 outputs, maps and DeepLIFT's forward records; faster where the CPU multiplies bf16
            fast (AMX), with maps close to fp32 (docs/benchmarks.md).
        **kwargs: go to the method (e.g. ``baselines=`` for deeplift-shap, ``n_samples=`` for lime,
            ``internal_batch_size=``/``perturbations_per_eval=`` to bound memory).

    Returns:
        The maps, detached, shaped like ``x``; ``(maps, *extra)`` when the method returns a tuple (lime with
        ``return_info=True``).

    Raises:
        ValueError: an unknown ``precision``, or an invalid ``target``, ``d_output`` or ``mode``.
        KeyError: an unknown ``method``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> G, D = models.build("mlp")
        >>> x = G(torch.randn(8, 100))
        >>> maps = explain("saliency", D, x, target="prob")
        >>> maps.shape, maps.requires_grad
        (torch.Size([8, 1, 32, 32]), False)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    fn = get(method)
    model = ExplainedModel(D, target=target, transform=transform, d_output=d_output)
    fast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with protected(model, mode, batch=x.detach() if batch is None else batch.detach()), fast:
        maps = fn(model, x.detach(), **kwargs)
    if isinstance(maps, tuple):  # (maps, info) from e.g. lime(return_info=True)
        return (maps[0].detach(), *maps[1:])
    return maps.detach()
