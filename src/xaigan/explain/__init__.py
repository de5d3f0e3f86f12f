"""Explanations of the discriminator's verdict, one call per batch.

>>> maps = explain("saliency", D, x)              # maps.shape == x.shape
>>> available()
['deeplift', 'deeplift-shap', 'input-x-gradient', 'integrated-gradients', 'lime', 'saliency', 'smoothgrad']

``D`` maps images ``(B, C, H, W)`` in [-1, 1] to logits ``(B, 1)``. By default the explained quantity is D's
probability of "real", ``sigmoid(D(x))`` (the original explained D's sigmoid output); ``target="logit"`` explains
the logit. Every explainer leaves D as it found it (see :func:`xaigan.explain._base.protected`): no parameter
gradients, BatchNorm statistics or train/eval flags change. Explanations are computed with D in eval mode unless
``mode="train"`` (the original's behaviour: dropout on, BatchNorm on the batch's statistics, which then also
couple the samples of a batch).

RNG: in eval mode saliency, input-x-gradient, integrated-gradients, deeplift and deeplift-shap draw no random
numbers; smoothgrad and lime draw from their ``generator`` argument or else torch's global RNG; in train mode
dropout draws from the global RNG too.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from xaigan.explain._base import ExplainedModel, protected
from xaigan.explain.deeplift import deeplift, deeplift_shap
from xaigan.explain.gradients import input_x_gradient, integrated_gradients, smoothgrad
from xaigan.explain.lime import lime
from xaigan.explain.saliency import saliency

Explainer = Callable[..., Tensor]
"""``fn(model, x, **kwargs) -> maps``: ``model`` maps ``(N, C, H, W)`` to ``(N, 1)``; maps have x's shape."""

REGISTRY: dict[str, Explainer] = {}


def register(name: str, fn: Explainer | None = None):
    """Register ``fn`` under ``name`` (usable as a decorator). Replaces an existing entry of that name."""

    def add(f: Explainer) -> Explainer:
        REGISTRY[name] = f
        return f

    return add(fn) if fn is not None else add


for _name, _fn in {
    "saliency": saliency,
    "input-x-gradient": input_x_gradient,
    "integrated-gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "deeplift": deeplift,
    "deeplift-shap": deeplift_shap,
    "lime": lime,
}.items():
    register(_name, _fn)


def available() -> list[str]:
    """Names accepted by :func:`explain`."""
    return sorted(REGISTRY)


def get(name: str) -> Explainer:
    if name not in REGISTRY:
        raise KeyError(f"unknown explainer {name!r}; available: {', '.join(available())}")
    return REGISTRY[name]


def explain(
    method: str,
    D: nn.Module,
    x: Tensor,
    /,
    *,
    target: str = "prob",
    mode: str = "eval",
    transform: Callable[[Tensor], Tensor] | None = None,
    **kwargs,
) -> Tensor:
    """Explain D's verdict on every image of ``x`` with ``method``; returns detached maps shaped like ``x``.

    ``target``: ``"prob"`` (sigmoid of the logit, default) or ``"logit"``. ``mode``: ``"eval"`` (default) or
    ``"train"``. ``transform``: a callable applied before D (e.g. DiffAugment); the explanation is then of
    ``D(transform(x))`` with respect to ``x``. ``kwargs`` go to the method (e.g. ``baselines=`` for deeplift-shap,
    ``n_samples=`` for lime, ``internal_batch_size=``/``perturbations_per_eval=`` to bound memory). The first
    three arguments are positional-only, so a method's own ``method=`` (integrated-gradients) can be passed.
    """
    fn = get(method)
    model = ExplainedModel(D, target=target, transform=transform)
    with protected(model, mode):
        maps = fn(model, x.detach(), **kwargs)
    if isinstance(maps, tuple):  # (maps, info) from e.g. lime(return_info=True)
        return (maps[0].detach(), *maps[1:])
    return maps.detach()


__all__ = [
    "REGISTRY",
    "ExplainedModel",
    "available",
    "deeplift",
    "deeplift_shap",
    "explain",
    "get",
    "input_x_gradient",
    "integrated_gradients",
    "lime",
    "protected",
    "register",
    "saliency",
    "smoothgrad",
]
