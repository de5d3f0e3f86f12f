"""Run configuration: one typed schema (:class:`Config`) gives every key's default, type, allowed values, range
and one-line help; YAML files and ``key=value`` overrides are layered on it and validated in one pass.

Keys are flat. Unknown keys and invalid values are rejected before any work starts, with a message that names the
key and what is allowed. The CLI flags, ``xaigan train --help`` and ``docs/config.md`` are generated from the schema.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from xaigan.config.checks import (
    RANGES,
    ConfigError,
    check_dataset,
    check_name,
    check_policy,
    check_prior,
    feature_names,
    model_names,
    xai_names,
)
from xaigan.config.overrides import load_yaml as load_yaml
from xaigan.config.overrides import parse_assignments as parse_assignments


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    range: str | None = None,
    check: Callable[[Any], None] | None = None,
    group: str = "",
) -> Any:
    """A schema field: ``choices`` may be a callable (a registry's names, read when validating)."""
    if range is not None and range not in RANGES:
        raise ValueError(f"unknown range {range!r}")
    meta = {"help": help, "choices": choices, "range": range, "check": check, "group": group}
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Every setting of one training run (the paper's standard GAN by default)."""

    # data
    dataset: str = option("fashion-mnist", "dataset name or folder:PATH", check=check_dataset, group="data")
    data_dir: str | None = option(None, "folder holding the dataset's files (must exist)", group="data")
    fraction: float = option(1.0, "fraction of the split to train on", range="in (0, 1]", group="data")
    subset: str = option("random", "how the fraction is chosen", choices=("random", "first"), group="data")
    split: str = option("all", "which split to train on", choices=("all", "train", "test"), group="data")
    # model
    model: str = option("mlp", "generator/discriminator pair", choices=model_names, group="model")
    noise_dim: int = option(100, "length of G's noise vector", range="> 0", group="model")
    d_output: str = option(
        "auto",
        "what D returns: logit, prob, or auto (prob when D's last module is a Sigmoid)",
        choices=("auto", "logit", "prob"),
        group="model",
    )
    # optimisation (the paper's standard GAN)
    epochs: int = option(30, "training epochs", range="> 0", group="optimisation")
    batch_size: int = option(128, "images per step", range="> 0", group="optimisation")
    lr_g: float = option(2e-4, "G's Adam learning rate", range="> 0", group="optimisation")
    lr_d: float = option(2e-4, "D's Adam learning rate", range="> 0", group="optimisation")
    beta1: float = option(0.5, "Adam beta1 (both optimisers)", range="in [0, 1]", group="optimisation")
    beta2: float = option(0.99, "Adam beta2 (both optimisers)", range="in [0, 1]", group="optimisation")
    label_real: float = option(
        0.9, "D's target for real images (label smoothing)", range="in [0, 1]", group="optimisation"
    )
    label_fake: float = option(0.1, "D's target for generated images", range="in [0, 1]", group="optimisation")
    g_target: float = option(0.9, "G's target for its own images", range="in [0, 1]", group="optimisation")
    g_clip: float = option(10.0, "max norm of G's gradient (0: no clipping)", range=">= 0", group="optimisation")
    d_steps: int = option(1, "D steps per G step", range="> 0", group="optimisation")
    precision: str = option(
        "fp32",
        "arithmetic of the training step: fp32, bf16 (autocast matmuls, fp32 weights and optimiser state), or auto: "
        "bf16 where the hardware multiplies bf16 fast (a CPU with AMX, a CUDA GPU with bf16), fp32 elsewhere (the "
        "run's config.yaml records which)",
        choices=("fp32", "bf16", "auto"),
        group="optimisation",
    )
    drop_last: bool = option(False, "drop the last incomplete batch of each epoch", group="optimisation")
    # run
    seed: int = option(0, "seed of data subset, initialisation, noise and shuffling", group="run")
    device: str = option("auto", "where to train", choices=("auto", "cpu", "cuda", "mps"), group="run")
    name: str | None = option(
        None, "run name (default: from dataset, model, xai and seed)", check=check_name, group="run"
    )
    log_every: int = option(1, "write metrics.jsonl every N steps", range="> 0", group="run")
    sample_every: int = option(1, "write a sample grid every N epochs", range="> 0", group="run")
    checkpoint_every: int = option(1, "checkpoint every N epochs", range="> 0", group="run")
    progress: bool = option(True, "show a progress bar", group="run")
    tensorboard: bool = option(True, "mirror metrics to TensorBoard when installed", group="run")
    # xAI guidance
    xai: str = option("none", "explainer that guides G (none: the standard GAN)", choices=xai_names, group="xai")
    alpha: float = option(
        0.2, "strength (amplify: G's gradient becomes grad * (1 + alpha * mask))", range=">= 0", group="xai"
    )
    xai_use: str = option(
        "amplify",
        "how the mask reshapes G's gradient: amplify (paper), suppress, replace, weight (per-sample loss weight), "
        "signed (signed attribution)",
        choices=("amplify", "suppress", "replace", "weight", "signed"),
        group="xai",
    )
    xai_schedule: str = option(
        "constant", "alpha over the guided epochs", choices=("constant", "ramp-up", "ramp-down"), group="xai"
    )
    xai_start: float = option(0.5, "fraction of the epochs after which guidance starts", range="in [0, 1]", group="xai")
    xai_select: str = option("fake", "explain the samples D calls fake, or all", choices=("fake", "all"), group="xai")
    xai_threshold: float = option(
        0.5, "D's probability of real below which a sample is fake", range="in [0, 1]", group="xai"
    )
    xai_normalize: str = option(
        "batch-minmax",
        "how maps become masks",
        choices=("batch-minmax", "selected-minmax", "sample-minmax", "sample-percentile", "softmax"),
        group="xai",
    )
    xai_clip: float = option(
        99.0, "percentile each map is clipped at (sample-percentile)", range="in (0, 100]", group="xai"
    )
    xai_temperature: float = option(0.25, "temperature of the softmax normalisation", range="> 0", group="xai")
    xai_shuffle: bool = option(
        False,
        "placebo control: permute each map's pixels before it becomes a mask (same values, no locations)",
        group="xai",
    )
    xai_flat: bool = option(
        False,
        "content-free control: every explained sample's mask is the mean of the explained masks",
        group="xai",
    )
    xai_precision: str = option(
        "fp32",
        "arithmetic of the explainer: fp32, or bf16 (D's matrix products in bf16, maps in fp32; faster "
        "deeplift-shap and lime guided steps on CPUs with AMX, docs/benchmarks.md; saliency with explain_mode step "
        "reads G's own pass of D, in the training precision)",
        choices=("fp32", "bf16"),
        group="xai",
    )
    xai_target: str = option(
        "prob", "explain D's probability of real or its logit", choices=("prob", "logit"), group="xai"
    )
    explain_mode: str = option(
        "auto",
        "D's mode while explained (train: the original's; step: train, and saliency reuses G's own step pass of D; "
        "batch: BatchNorm with the fake batch's statistics, frozen; auto: batch if D has BatchNorm, else eval)",
        choices=("auto", "eval", "train", "batch", "step"),
        group="xai",
    )
    xai_baselines: int = option(128, "real reference images (deeplift-shap)", range="> 0", group="xai")
    xai_steps: int = option(16, "integration steps (integrated-gradients)", range="> 0", group="xai")
    lime_samples: int = option(100, "perturbations per image (lime)", range=">= 2", group="xai")
    lime_segmentation: str = option("quickshift", "superpixels (lime)", choices=("quickshift", "grid"), group="xai")
    lime_fill: str = option(
        "segment-mean",
        "what a switched-off superpixel shows (lime): its own mean (the lime package's default), the image's mean, "
        "grey (0) or black (-1)",
        choices=("segment-mean", "mean", "grey", "black"),
        group="xai",
    )
    prior: str | None = option(None, "image file of a prior mask in [0, 1] (grey)", check=check_prior, group="xai")
    prior_mode: str = option(
        "multiply", "how the prior meets the mask", choices=("multiply", "add", "replace"), group="xai"
    )
    xai_patience: int = option(
        50, "steps of inert guidance (nothing explained, constant mask) before a warning", range="> 0", group="xai"
    )
    xai_strict: bool = option(False, "stop with an error instead of warning when guidance is inert", group="xai")
    # augmentation
    diffaugment: str = option(
        "", "DiffAugment policy, e.g. color,translation,cutout", check=check_policy, group="augment"
    )
    xai_cutout: float = option(
        0.0,
        "explanation-guided augmentation of D's inputs: side of the square cut where D looks most, as a fraction of "
        "the image (0: off); before DiffAugment",
        range="in [0, 1]",
        group="augment",
    )
    # evaluation
    eval_every: int = option(
        0, "score FID/KID every N epochs (0: never) and keep the best checkpoint (best.pt)", range=">= 0", group="eval"
    )
    eval_n: int = option(10000, "generated samples per evaluation", range="> 0", group="eval")
    g_ema: float = option(
        0.0,
        "decay of a moving average of G's weights that samples and evaluations use (0: off, e.g. 0.999)",
        range="in [0, 1)",
        group="eval",
    )
    eval_features: str = option("domain", "feature extractor for FID/KID", choices=feature_names, group="eval")
    eval_reference: str = option(
        "all", "real split the samples are compared with", choices=("all", "train", "test"), group="eval"
    )

    def __post_init__(self) -> None:
        for spec in schema():
            value = _coerce(spec, getattr(self, spec.name))
            setattr(self, spec.name, value)
            spec.validate(value)
        self._check_together()

    @property
    def xai_start_epoch(self) -> int:
        """The 0-based epoch the guidance starts in: ``ceil(xai_start * epochs)``, in exact decimal arithmetic.

        The original switches on at epoch ``(E + 1) / 2`` for odd E and ``E / 2`` for even E (0-based), which is
        ``ceil(E / 2)``; ``int(0.5 * E)`` would start one epoch early for odd E, and float products truncate
        (``int(0.29 * 100) == 28``, ``math.ceil(0.3 * 10) == 4``), hence the decimal fraction.
        """
        return math.ceil(Fraction(repr(float(self.xai_start))) * self.epochs)

    def _check_together(self) -> None:
        """Settings that are each valid but together mean the guidance never runs."""
        if self.xai == "none":
            return
        if self.xai_start_epoch >= self.epochs:
            raise ConfigError(
                f"xai_start {self.xai_start} with {self.epochs} epochs starts the guidance after the last epoch: "
                "it would never run (use xai: none for a standard GAN)"
            )
        if self.xai_use == "suppress" and self.alpha > 1:
            raise ConfigError(
                f"xai_use suppress with alpha {self.alpha} > 1 reverses G's gradient where the mask is above 1/alpha; "
                "use alpha <= 1"
            )
        if self.xai_shuffle and self.xai_flat:
            raise ConfigError("xai_shuffle and xai_flat are two controls of a guidance: set at most one")
        if self.prior_mode == "replace" and self.prior is None:
            raise ConfigError("prior_mode replace uses the prior as the mask: set prior (an image file)")
        if self.xai_select == "fake" and self.xai_threshold == 0:
            raise ConfigError(
                "xai_threshold 0 selects no sample (a probability is never below 0): guidance would never run"
            )

    # -- mapping views ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Validated config from a mapping; missing keys take their defaults, unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError("; ".join(_unknown_key(key, known) for key in unknown))
        return cls(**dict(values))

    def replace(self, **changes: Any) -> Config:
        """A validated copy with ``changes`` applied."""
        return Config.from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class Option:
    """One key of the schema, as the CLI and the docs see it."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None
    range: str | None
    check: Callable[[Any], None] | None
    group: str

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def validate(self, value: Any) -> None:
        if value is None:
            return
        allowed = self.allowed()
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{self.name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.range is not None and not RANGES[self.range](value):
            raise ConfigError(f"{self.name} must be {self.range}, got {value!r}")
        if self.check is not None:
            self.check(value)

    def describe(self) -> str:
        """The help line with the type, the allowed values or range and the default."""
        parts = [self.help]
        allowed = self.allowed()
        if allowed:
            parts.append("one of " + ", ".join(allowed))
        if self.range:
            parts.append(self.range)
        if self.default is None:  # unset: the help says what that means, or it means nothing is used
            return "; ".join(parts) + ("" if "default" in self.help else " (default: unset)")
        return "; ".join(parts) + f" (default: {self.default!r})"


def _unknown_key(key: str, known: set[str]) -> str:
    """``unknown config key 'lr_dd'``, with the closest known keys where some are close (``xaigan train --help``
    lists them all)."""
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(k) for k in close)}?" if close else " (xaigan train --help lists them)"
    return f"unknown config key {key!r}{hint}"


_SCHEMA: list[Option] | None = None


def schema() -> list[Option]:
    """Every key of :class:`Config` in declaration order."""
    global _SCHEMA
    if _SCHEMA is None:
        hints = typing.get_type_hints(Config)
        out = []
        for f in dataclasses.fields(Config):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = bool(typing.get_args(hint)) and type(None) in typing.get_args(hint)
            kind = args[0] if optional else hint
            meta = f.metadata
            out.append(
                Option(
                    f.name,
                    kind,
                    optional,
                    f.default,
                    meta["help"],
                    meta["choices"],
                    meta["range"],
                    meta["check"],
                    meta["group"],
                )
            )
        _SCHEMA = out
    return _SCHEMA


def _coerce(spec: Option, value: Any) -> Any:
    """Cast ``value`` to the key's type (strings from the command line, ints where floats are expected)."""
    if value is None:
        if spec.optional:
            return None
        raise ConfigError(f"{spec.name} must be of type {spec.type.__name__}, got None")
    kind = spec.type
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{spec.name} must be true or false, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    raise ConfigError(f"{spec.name} must be of type {kind.__name__}, got {value!r}")


def resolve(*overrides: Mapping[str, Any] | None) -> Config:
    """Defaults, then each override in order (later wins), validated."""
    merged: dict[str, Any] = {}
    for layer in overrides:
        if layer:
            merged.update(layer)
    return Config.from_dict(merged)


def markdown() -> str:
    """``docs/config.md``: every key, grouped, with type, default, allowed values and help."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from `xaigan.config.Config` (`python -m xaigan.config > docs/config.md`). Every key can be set in a",
        "YAML file (`--config`), with its own flag (`--lr-d 1e-4`) or with `--set key=value`; later layers win.",
        "",
    ]
    group = None
    for o in schema():
        if o.group != group:
            group = o.group
            lines += ["", f"## {group}", "", "| key | type | default | allowed | help |", "|---|---|---|---|---|"]
        allowed = o.allowed()
        shown = ", ".join(allowed) if allowed else (o.range or "")
        kind = o.type.__name__ + (" or null" if o.optional else "")
        lines.append(f"| `{o.name}` | {kind} | `{o.default!r}` | {shown} | {o.help} |")
    return "\n".join(lines) + "\n"
