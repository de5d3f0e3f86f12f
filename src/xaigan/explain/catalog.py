"""The explainers by name: :func:`register` adds one with its settings (:class:`ExplainerInfo`), :func:`info`,
:func:`get` and :func:`available` read them. The built-in explainers are registered here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from xaigan.explain.deeplift import deeplift, deeplift_shap
from xaigan.explain.gradients import input_x_gradient, integrated_gradients, integrated_gradients_real, smoothgrad
from xaigan.explain.lime import lime
from xaigan.explain.saliency import saliency
from xaigan.registry import Registry

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
