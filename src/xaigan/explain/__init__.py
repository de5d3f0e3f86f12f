"""Explanations of the discriminator's verdict, one call per batch.

>>> maps = explain("saliency", D, x)              # maps.shape == x.shape
>>> available()
['deeplift', 'deeplift-shap', 'input-x-gradient', 'integrated-gradients', 'integrated-gradients-real', 'lime',
 'saliency', 'smoothgrad']

``D`` maps images ``(B, C, H, W)`` in [-1, 1] to one score per sample: a logit (our built-in models) or a
probability of "real" (a D ending in ``nn.Sigmoid``, the paper's own D). ``d_output`` says which (``"auto"``,
the default, detects a final Sigmoid, see :func:`detect_output`). By default :func:`explain` explains what D
returns, as captum does; ``target="prob"`` explains the probability of real and ``target="logit"`` the logit,
each computed correctly for both kinds of D (see :class:`ExplainedModel`). Every explainer leaves D as it found it
(see :func:`protected`): no parameter gradients, BatchNorm statistics or train/eval flags change. Explanations
are computed with D in eval mode unless ``mode="train"`` (the original's behaviour: dropout on, BatchNorm on the
batch's statistics, which then also couple the samples of a batch).

Explainers are registered with :func:`register` together with their settings (:class:`ExplainerInfo`): which of
their arguments a run config sets, and which take real reference images.

RNG: in eval mode saliency, input-x-gradient, integrated-gradients, deeplift and deeplift-shap draw no random
numbers; smoothgrad and lime draw from their ``generator`` argument or else torch's global RNG; in train mode
dropout draws from the global RNG too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from xaigan.explain._base import (
    OUTPUTS,
    TARGETS,
    ExplainedModel,
    detect_output,
    has_batchnorm,
    protected,
    resolve_mode,
    resolve_output,
)
from xaigan.explain.deeplift import deeplift, deeplift_shap
from xaigan.explain.gradients import input_x_gradient, integrated_gradients, integrated_gradients_real, smoothgrad
from xaigan.explain.lime import lime
from xaigan.explain.saliency import saliency
from xaigan.registry import Registry

PRECISIONS = ("fp32", "bf16")

Explainer = Callable[..., Tensor]
"""``fn(model, x, **kwargs) -> maps``: ``model`` maps ``(N, C, H, W)`` to ``(N, 1)``; maps have x's shape."""


@dataclass(frozen=True)
class ExplainerInfo:
    """A registered explainer and its settings.

    ``options``: explainer keyword -> run-config key (integrated-gradients: ``{"n_steps": "xai_steps"}``).
    ``references``: ``(keyword, config key of how many)`` when the explainer takes real reference images
    (deeplift-shap: ``("baselines", "xai_baselines")``), else ``None``. ``signed``: the keywords that make it keep
    the sign it drops by default (saliency: ``{"abs": False}``); empty when its maps are signed already.
    """

    name: str
    fn: Explainer
    summary: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    references: tuple[str, str] | None = None
    signed: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self, settings: Mapping[str, Any], references: Callable[[int], Tensor] | None = None) -> dict:
        """The explainer's keyword arguments from a run config; ``references(k)`` gives k real reference images."""
        out: dict[str, Any] = {}
        for kw, key in self.options.items():
            if key not in settings:
                raise KeyError(f"explainer {self.name!r} needs the setting {key!r} (for its {kw!r})")
            out[kw] = settings[key]
        if self.references is not None:
            kw, key = self.references
            if references is None:
                raise ValueError(f"explainer {self.name!r} needs real reference images ({kw}=): pass references")
            if key not in settings:
                raise KeyError(f"explainer {self.name!r} needs the setting {key!r} (how many {kw})")
            out[kw] = references(int(settings[key]))
        return out


REGISTRY: Registry[ExplainerInfo] = Registry("explainer")


def register(
    name: str,
    fn: Explainer,
    *,
    summary: str = "",
    options: Mapping[str, str] | None = None,
    references: tuple[str, str] | None = None,
    signed: Mapping[str, Any] | None = None,
) -> ExplainerInfo:
    """Register ``fn`` under ``name`` with its settings; a name already taken raises ``ValueError``."""
    refs = tuple(references) if references else None
    entry = ExplainerInfo(name, fn, summary, dict(options or {}), refs, dict(signed or {}))
    return REGISTRY.register(name, entry)


def info(name: str) -> ExplainerInfo:
    """The registered explainer ``name``; an unknown name raises ``KeyError`` listing the available ones."""
    return REGISTRY.get(name)


def get(name: str) -> Explainer:
    """The explainer function registered as ``name``."""
    return info(name).fn


def available() -> list[str]:
    """Names accepted by :func:`explain`, sorted."""
    return REGISTRY.names()


register("saliency", saliency, summary="|d target / d pixel|, one backward pass", signed={"abs": False})
register("input-x-gradient", input_x_gradient, summary="pixel * d target / d pixel")
register(
    "integrated-gradients",
    integrated_gradients,
    summary="gradients integrated from a mid-grey baseline to the image",
    options={"n_steps": "xai_steps"},
)
register(
    "integrated-gradients-real",
    integrated_gradients_real,
    summary="gradients integrated from a real image to each sample (real references, cycled)",
    options={"n_steps": "xai_steps"},
    references=("baselines", "xai_baselines"),
)
register(
    "smoothgrad",
    smoothgrad,
    summary="mean |gradient| over Gaussian-noised copies of the image",
    signed={"abs": False},
)
register("deeplift", deeplift, summary="DeepLIFT rescale rule against a mid-grey reference")
register(
    "deeplift-shap",
    deeplift_shap,
    summary="DeepLIFT averaged over real reference images",
    references=("baselines", "xai_baselines"),
)
register(
    "lime",
    lime,
    summary="superpixel on/off perturbations and a weighted linear surrogate",
    options={"n_samples": "lime_samples", "segmentation": "lime_segmentation", "fill": "lime_fill"},
)


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

    ``target``: ``"output"`` (what D returns, as captum does; default), ``"prob"`` (probability of real) or
    ``"logit"``. ``d_output``: what D returns, ``"auto"`` (a final ``nn.Sigmoid`` means ``"prob"``), ``"logit"``
    or ``"prob"``. ``mode``: ``"auto"`` (default: ``"batch"`` for a BatchNorm D, else ``"eval"``), ``"eval"``,
    ``"train"`` or ``"batch"`` (BatchNorm with the statistics of ``batch``, default ``x``; see
    :func:`xaigan.explain.resolve_mode`). ``transform``: a callable applied before D
    (e.g. DiffAugment); the explanation is then of ``D(transform(x))`` with respect to ``x``.
    ``precision``: ``"bf16"`` runs D's matrix products (and DeepLIFT's transposed ones) under bf16 autocast, with
    fp32 outputs, maps and DeepLIFT's forward records: deeplift-shap and lime guided steps 1.5-1.7x faster on CPUs
    with AMX, their maps within 1.3% of fp32 (saliency's 3.2%) on a trained D (``docs/benchmarks.md``).
    ``kwargs`` go to the method (e.g. ``baselines=`` for deeplift-shap,
    ``n_samples=`` for lime, ``internal_batch_size=``/``perturbations_per_eval=`` to bound memory). The first three
    arguments are positional-only, so a method's own ``method=`` (integrated-gradients) can be passed.
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


__all__ = [
    "OUTPUTS",
    "PRECISIONS",
    "REGISTRY",
    "TARGETS",
    "ExplainedModel",
    "Explainer",
    "ExplainerInfo",
    "available",
    "deeplift",
    "deeplift_shap",
    "detect_output",
    "explain",
    "get",
    "info",
    "input_x_gradient",
    "integrated_gradients",
    "integrated_gradients_real",
    "lime",
    "protected",
    "register",
    "has_batchnorm",
    "resolve_mode",
    "resolve_output",
    "saliency",
    "smoothgrad",
]
