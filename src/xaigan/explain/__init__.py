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
    MODES,
    OUTPUTS,
    TARGETS,
    ExplainedModel,
    detect_output,
    has_batchnorm,
    protected,
    resolve_mode,
    resolve_output,
    target_of_output,
)
from xaigan.explain.deeplift import deeplift, deeplift_shap
from xaigan.explain.gradients import input_x_gradient, integrated_gradients, integrated_gradients_real, smoothgrad
from xaigan.explain.lime import lime
from xaigan.explain.saliency import saliency
from xaigan.registry import Registry
from xaigan.settings import PRECISIONS

"""The explainer's arithmetic (``precision`` of :func:`explain`): fp32, or bf16 matrix products with fp32 maps."""

Explainer = Callable[..., Tensor]
"""``fn(model, x, **kwargs) -> maps``: ``model`` maps ``(N, C, H, W)`` to ``(N, 1)``; maps have x's shape."""


@dataclass(frozen=True)
class ExplainerInfo:
    """A registered explainer and its settings (made by :func:`register`, read with :func:`info`).

    Args:
        name: the name :func:`explain` accepts.
        fn: the explainer, ``fn(model, x, **kwargs) -> maps`` (see :data:`Explainer`).
        summary: one line on what it computes.
        options: explainer keyword -> run-config key (integrated-gradients: ``{"n_steps": "xai_steps"}``).
        references: ``(keyword, config key of how many)`` when the explainer takes real reference images
            (deeplift-shap: ``("baselines", "xai_baselines")``), else ``None``.
        signed: the keywords that make it keep the sign it drops by default (saliency: ``{"abs": False}``); empty
            when its maps are signed already.

    Example:
        >>> entry = info("integrated-gradients")
        >>> entry.options
        {'n_steps': 'xai_steps'}
        >>> entry.kwargs({"xai_steps": 16})
        {'n_steps': 16}
    """

    name: str
    fn: Explainer
    summary: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    references: tuple[str, str] | None = None
    signed: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self, settings: Mapping[str, Any], references: Callable[[int], Tensor] | None = None) -> dict:
        """The explainer's keyword arguments from a run config.

        Args:
            settings: run-config keys and values (e.g. ``Config.to_dict()``).
            references: ``references(k)`` gives ``k`` real reference images; needed when :attr:`references` is set.

        Returns:
            The keyword arguments for :attr:`fn`.

        Raises:
            KeyError: a config key the explainer needs is missing from ``settings``.
            ValueError: the explainer takes reference images and ``references`` is None.

        Example:
            >>> info("integrated-gradients").kwargs({"xai_steps": 32})
            {'n_steps': 32}
        """
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
"""Every explainer by name (:func:`register` adds one, :func:`info` reads one)."""


def register(
    name: str,
    fn: Explainer,
    *,
    summary: str = "",
    options: Mapping[str, str] | None = None,
    references: tuple[str, str] | None = None,
    signed: Mapping[str, Any] | None = None,
) -> ExplainerInfo:
    """Register ``fn`` under ``name`` with its settings, so that :func:`explain` and run configs can use it.

    Args:
        name: the explainer's name.
        fn: ``fn(model, x, **kwargs) -> maps``, maps shaped like ``x`` (see :data:`Explainer`).
        summary: one line on what it computes.
        options: explainer keyword -> run-config key that sets it.
        references: ``(keyword, config key of how many)`` when ``fn`` takes real reference images.
        signed: the keywords that make ``fn`` keep the sign it drops by default.

    Returns:
        The registered entry.

    Raises:
        ValueError: ``name`` is already taken.

    Example:
        >>> def brightness(model, x):
        ...     return x.detach() + 1  # not an explanation: how bright each pixel is
        >>> register("brightness", brightness, summary="pixel value + 1").name
        'brightness'
        >>> REGISTRY.unregister("brightness")
    """
    refs = tuple(references) if references else None
    entry = ExplainerInfo(name, fn, summary, dict(options or {}), refs, dict(signed or {}))
    return REGISTRY.register(name, entry)


def info(name: str) -> ExplainerInfo:
    """The registered explainer ``name`` with its settings.

    Args:
        name: an explainer name (:func:`available`).

    Returns:
        Its entry.

    Raises:
        KeyError: an unknown name (the message lists the available ones).

    Example:
        >>> info("deeplift-shap").references
        ('baselines', 'xai_baselines')
    """
    return REGISTRY.get(name)


def get(name: str) -> Explainer:
    """The explainer function registered as ``name``.

    Args:
        name: an explainer name (:func:`available`).

    Returns:
        The function, ``fn(model, x, **kwargs) -> maps``.

    Example:
        >>> get("saliency") is saliency
        True
    """
    return info(name).fn


def available() -> list[str]:
    """Names accepted by :func:`explain`, sorted.

    Returns:
        The registered explainer names.

    Example:
        >>> available()[:3]
        ['deeplift', 'deeplift-shap', 'input-x-gradient']
    """
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


__all__ = [
    "MODES",
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
    "target_of_output",
]
