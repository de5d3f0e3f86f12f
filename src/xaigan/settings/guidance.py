"""The settings of explanation guidance, declared once: :class:`GuidanceSettings` is what
:class:`xaigan.guidance.XAIGuidance` runs with, and each field with a ``key`` is also a key of the run configuration
(``use`` is ``xai_use``), with the same default, allowed values and help. Adding a setting is one field here plus
its use in the guidance.

The allowed-value lists live here too, so the guidance, the explainers and the configuration read the same tuples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xaigan.settings.options import ConfigError, Option, option, options_of

SELECT = ("fake", "all")
NORMALIZE = ("batch-minmax", "selected-minmax", "sample-minmax", "sample-percentile", "softmax")
PRIOR_MODES = ("multiply", "add", "replace")
USES = ("amplify", "suppress", "replace", "weight", "signed")
SCHEDULES = ("constant", "ramp-up", "ramp-down")
MODES = ("auto", "eval", "train", "batch", "step")  # D's mode while explained (xaigan.explain.resolve_mode)
OUTPUTS = ("logit", "prob")  # what D returns
TARGETS = ("prob", "logit", "output")  # what is explained: D's probability of real, its logit, or its output
PRECISIONS = ("fp32", "bf16")


def check_prior(value: Any) -> None:
    """A prior named by a file must be a readable image (a tensor given in code is checked where it is used)."""
    if not isinstance(value, (str, Path)):
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(Path(value).expanduser()) as img:
            img.verify()
    except (OSError, UnidentifiedImageError) as exc:
        raise ConfigError(f"prior: {value} is not a readable image file ({exc})") from exc


@dataclass(frozen=True)
class GuidanceSettings:
    """Every setting of the guidance (the paper's by default), validated when made (:class:`ConfigError`).

    Attributes:
        alpha: the strength (0.2): the gradient at the image becomes ``grad * (1 + alpha * mask)``.
        use: how the mask reshapes G's gradient (``"amplify"``, the paper): see :mod:`xaigan.guidance.uses`.
        schedule: the strength over the guided epochs (``"constant"``, ``"ramp-up"``, ``"ramp-down"``; a ramp needs
            ``end_epoch``).
        select: ``"fake"`` (default): explain only the samples whose probability of real is below ``threshold``
            (D's output for a D that returns probabilities, its sigmoid for one that returns logits); ``"all"``
            explains every sample. Unlike the original, one fake sample is explained too; no fake sample means no
            change.
        threshold: the probability of real below which a sample is fake (0.5).
        normalize: how maps become masks (``"batch-minmax"``): see :func:`xaigan.guidance.normalize`.
        clip: the percentile each map is clipped at (the ``sample-percentile`` normalisation).
        temperature: the temperature of the ``softmax`` normalisation.
        shuffle: the placebo control, each explained sample's map with its pixels permuted.
        flat: the content-free control, every explained sample's mask one number, the mean of the explained
            masks. At most one of ``shuffle`` and ``flat``.
        precision: the explainer's arithmetic, ``"fp32"`` or ``"bf16"`` (see :func:`xaigan.explain.explain`).
        target: explain the probability of real (``"prob"``, default), the ``"logit"`` or D's ``"output"``.
        explain_mode: D's mode while explaining (``"auto"``); ``"train"`` is the original's (dropout on; BatchNorm
            buffers are restored afterwards); ``"batch"``: BatchNorm with the statistics of the whole batch of
            fakes, frozen; ``"step"``: train, and saliency reuses G's own pass of D; ``"auto"`` is batch for a
            BatchNorm D, else eval (see :func:`xaigan.explain.resolve_mode`). D's parameters, gradients, buffers
            and flags are never changed.
        prior: ``None`` (default), the path of an image file (read as grey, resized to the image size) or, in
            code, a tensor broadcastable to one image ``(C, H, W)`` with values in [0, 1]; combined with the
            selected samples' masks by ``prior_mode``.
        prior_mode: ``"multiply"`` (default), ``"add"`` or ``"replace"`` (the prior is the mask; no explanation
            is computed; needs a prior).
        patience: with ``select="fake"``, no sample explained for ``patience`` consecutive calls, or a mask
            constant over the batch for ``patience`` consecutive calls that explained samples, is said once per
            condition (a warning and an event).
        strict: raise :class:`xaigan.guidance.GuidanceHealthError` instead of warning (False).
        start_epoch: the guidance is active from this 0-based epoch on (0).
        end_epoch: the run's number of epochs, for the ramps.

    Example:
        >>> s = GuidanceSettings(alpha=0.5, use="weight")
        >>> s.alpha, s.select, s.replace(select="all").select
        (0.5, 'fake', 'all')
        >>> GuidanceSettings(use="paper")
        Traceback (most recent call last):
        ...
        xaigan.settings.options.ConfigError: use must be one of amplify, suppress, replace, weight, signed; got 'paper'
    """

    alpha: float = option(
        0.2,
        "strength (amplify: G's gradient becomes grad * (1 + alpha * mask))",
        range=">= 0",
        group="xai",
        key="alpha",
    )
    use: str = option(
        "amplify",
        "how the mask reshapes G's gradient: amplify (paper), suppress, replace, weight (per-sample loss weight), "
        "signed (signed attribution)",
        choices=USES,
        group="xai",
        key="xai_use",
    )
    schedule: str = option(
        "constant", "alpha over the guided epochs", choices=SCHEDULES, group="xai", key="xai_schedule"
    )
    select: str = option(
        "fake", "explain the samples D calls fake, or all", choices=SELECT, group="xai", key="xai_select"
    )
    threshold: float = option(
        0.5, "D's probability of real below which a sample is fake", range="in [0, 1]", group="xai", key="xai_threshold"
    )
    normalize: str = option(
        "batch-minmax", "how maps become masks", choices=NORMALIZE, group="xai", key="xai_normalize"
    )
    clip: float = option(
        99.0, "percentile each map is clipped at (sample-percentile)", range="in (0, 100]", group="xai", key="xai_clip"
    )
    temperature: float = option(
        0.25, "temperature of the softmax normalisation", range="> 0", group="xai", key="xai_temperature"
    )
    shuffle: bool = option(
        False,
        "placebo control: permute each map's pixels before it becomes a mask (same values, no locations)",
        group="xai",
        key="xai_shuffle",
    )
    flat: bool = option(
        False,
        "content-free control: every explained sample's mask is the mean of the explained masks",
        group="xai",
        key="xai_flat",
    )
    precision: str = option(
        "fp32",
        "arithmetic of the explainer: fp32, or bf16 (D's matrix products in bf16, maps in fp32; faster "
        "deeplift-shap and lime guided steps on CPUs with AMX, docs/benchmarks.md; saliency with explain_mode step "
        "reads G's own pass of D, in the training precision)",
        choices=PRECISIONS,
        group="xai",
        key="xai_precision",
    )
    target: str = option(
        "prob",
        "explain D's probability of real, its logit, or its output as it is",
        choices=TARGETS,
        group="xai",
        key="xai_target",
    )
    explain_mode: str = option(
        "auto",
        "D's mode while explained (train: the original's; step: train, and saliency reuses G's own step pass of D; "
        "batch: BatchNorm with the fake batch's statistics, frozen; auto: batch if D has BatchNorm, else eval)",
        choices=MODES,
        group="xai",
        key="explain_mode",
    )
    prior: str | None = option(
        None, "image file of a prior mask in [0, 1] (grey)", check=check_prior, group="xai", key="prior"
    )
    prior_mode: str = option(
        "multiply", "how the prior meets the mask", choices=PRIOR_MODES, group="xai", key="prior_mode"
    )
    patience: int = option(
        50,
        "steps of inert guidance (nothing explained, constant mask) before a warning",
        range="> 0",
        group="xai",
        key="xai_patience",
    )
    strict: bool = option(
        False, "stop with an error instead of warning when guidance is inert", group="xai", key="xai_strict"
    )
    start_epoch: int = option(0, "the 0-based epoch the guidance starts in", range=">= 0", group="xai")
    end_epoch: int | None = option(None, "the run's number of epochs (the ramps need it)", group="xai")
    # Messages name a setting by its configuration key when the settings came from a run configuration.
    by_key: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for o in options():
            value = getattr(self, o.name)
            if o.type in (bool, int, float):
                value = o.coerce(value, self._label(o.name))
                object.__setattr__(self, o.name, value)
            o.validate(value, self._label(o.name))
        self._check_together()

    def _label(self, name: str) -> str:
        key = _OPTIONS[name].key if name in _OPTIONS else None
        return key if self.by_key and key else name

    def _check_together(self) -> None:
        """Settings that are each valid but not together."""
        n = self._label
        if self.use == "suppress" and self.alpha > 1:
            raise ConfigError(
                f"{n('use')} suppress with {n('alpha')} {self.alpha} > 1 reverses G's gradient where the mask is above "
                f"1/alpha; use {n('alpha')} <= 1"
            )
        if self.shuffle and self.flat:
            raise ConfigError(f"{n('shuffle')} and {n('flat')} are two controls of a guidance: set at most one")
        if self.prior_mode == "replace" and self.prior is None:
            raise ConfigError(f"{n('prior_mode')} replace uses the prior as the mask: set {n('prior')}")
        if self.select == "fake" and self.threshold == 0:
            raise ConfigError(
                f"{n('threshold')} 0 selects no sample (a probability is never below 0): guidance would never run"
            )
        if self.schedule != "constant" and self.end_epoch is None:
            raise ConfigError(f"{n('schedule')} {self.schedule} needs end_epoch (the run's number of epochs)")

    def replace(self, **changes: Any) -> GuidanceSettings:
        """A validated copy with ``changes`` applied (unknown names are an error)."""
        unknown = sorted(set(changes) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"unknown guidance setting(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings by name (not the configuration keys)."""
        return {name: getattr(self, name) for name in _OPTIONS}

    @classmethod
    def from_keys(cls, values: Mapping[str, Any], **derived: Any) -> GuidanceSettings:
        """The settings from a run configuration's keys (``values["xai_use"]`` is ``use``) and the ``derived``
        ones the configuration does not hold as keys (``start_epoch``, ``end_epoch``)."""
        given = {o.name: values[o.key] for o in options() if o.key is not None and o.key in values}
        return cls(**given, **derived, by_key=True)


def options() -> list[Option]:
    """Every guidance setting in declaration order (``key``: its run-configuration key, or None)."""
    return list(_OPTIONS.values())


def config_options() -> list[Option]:
    """The guidance settings that are run-configuration keys, as the configuration declares them."""
    return [o.renamed(o.key, o.group) for o in options() if o.key is not None]


_OPTIONS: dict[str, Option] = {o.name: o for o in options_of(GuidanceSettings)}
