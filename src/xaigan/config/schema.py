"""The run configuration's schema: :class:`Config`, one typed field per key with its default, type, allowed values,
range and one-line help. The guidance's keys are :class:`xaigan.settings.GuidanceSettings`' fields, declared there
once and placed here by :func:`_with_guidance`."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from xaigan.config.checks import (
    check_dataset,
    check_name,
    check_own_model,
    check_policy,
    feature_names,
    model_names,
    xai_names,
)
from xaigan.settings import (
    ADAM,
    COMPILE,
    LOSSES,
    OUTPUTS,
    SPECTRAL_NORM,
    ConfigError,
    GuidanceSettings,
    Option,
    option,
    options_of,
)


def _with_guidance(after: str) -> Callable[[type], type]:
    """Insert the guidance settings that are configuration keys into the decorated class after its field ``after``,
    in their declared order, under their keys, with the same type, default, help and checks."""

    def insert(cls: type) -> type:
        annotations: dict[str, Any] = {}
        for name, hint in cls.__annotations__.items():
            annotations[name] = hint
            if name != after:
                continue
            for f in dataclasses.fields(GuidanceSettings):
                key = f.metadata.get("key")
                if key:
                    annotations[key] = GuidanceSettings.__annotations__[f.name]
                    setattr(cls, key, field(default=f.default, metadata={**f.metadata, "key": None}))
        cls.__annotations__ = annotations
        return cls

    return insert


@dataclass
@_with_guidance(after="xai_start")
class Config:
    """Every setting of one training run (the paper's standard GAN by default)."""

    # data
    dataset: str = option("fashion-mnist", "dataset name or folder:PATH", check=check_dataset, group="data")
    data_dir: str | None = option(None, "folder holding the dataset's files (must exist)", group="data")
    fraction: float = option(1.0, "fraction of the split to train on", range="in (0, 1]", group="data")
    subset: str = option("random", "how the fraction is chosen", choices=("random", "first"), group="data")
    split: str = option("all", "which split to train on", choices=("all", "train", "test"), group="data")
    # model
    model: str = option(
        "mlp",
        "generator/discriminator pair, or your own: package.module:function returning (G, D) for (channels, "
        "image_size, noise_dim)",
        choices=model_names,
        other=check_own_model,
        group="model",
    )
    spectral_norm: str = option(
        "model",
        "spectral normalisation of D: model (as the model builds it: sngan yes, the others no), on (every "
        "convolution and dense layer), off",
        choices=SPECTRAL_NORM,
        group="model",
    )
    noise_dim: int = option(100, "length of G's noise vector", range="> 0", group="model")
    d_output: str = option(
        "auto",
        "what D returns: logit, prob, or auto (prob when D's last module is a Sigmoid)",
        choices=("auto", *OUTPUTS),
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
    loss: str = option(
        "bce-smoothed",
        "GAN loss: bce-smoothed (the paper's: BCE with label_real/label_fake/g_target), ns (non-saturating BCE, no "
        "smoothing) or hinge (on D's raw score)",
        choices=LOSSES,
        group="optimisation",
    )
    g_topk: bool = option(
        False,
        "top-k training (Sinha et al. 2020): G's update keeps the k samples D scores most realistic; k shrinks by "
        "g_topk_gamma every epoch, never below g_topk_min of the batch",
        group="optimisation",
    )
    g_topk_gamma: float = option(0.99, "top-k: k's factor per epoch", range="in (0, 1]", group="optimisation")
    g_topk_min: float = option(
        0.5, "top-k: the least fraction of the batch kept", range="in (0, 1]", group="optimisation"
    )
    g_accept_weight: float = option(
        0.0,
        "acceptance weighting: the samples D accepts weigh 1 + this in G's loss (0: off; what the paper's rule does "
        "to them, without explanations)",
        range=">= 0",
        group="optimisation",
    )
    precision: str = option(
        "fp32",
        "arithmetic of the training step: fp32, bf16 (autocast matmuls, fp32 weights and optimiser state), or auto: "
        "bf16 where the hardware multiplies bf16 fast (a CPU with AMX, a CUDA GPU with bf16), fp32 elsewhere (the "
        "run's config.yaml records which)",
        choices=("fp32", "bf16", "auto"),
        group="optimisation",
    )
    adam: str = option(
        "auto",
        "Adam's implementation: foreach (several tensors per kernel; bit-identical to the per-parameter loop), fused "
        "(one kernel per step; fewer passes over memory, last bits differ), or auto: fused with bf16, foreach with "
        "fp32",
        choices=ADAM,
        group="optimisation",
    )
    compile: str = option(
        "false",
        "torch.compile G's and D's training passes (inductor): true, false, or auto (true on a CUDA GPU, false on a "
        "CPU, where it measured no faster, docs/benchmarks.md); changes the last bits, so off by default",
        choices=COMPILE,
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
    deterministic: bool = option(
        False,
        "deterministic algorithms only (torch.use_deterministic_algorithms, a fixed cuBLAS workspace, no cuDNN "
        "autotuning), so that a killed and resumed GPU run equals an uninterrupted one; CPU runs are so already",
        group="run",
    )
    progress: bool = option(True, "show a progress bar", group="run")
    tensorboard: bool = option(True, "mirror metrics to TensorBoard when installed", group="run")
    # xAI guidance
    xai: str = option("none", "explainer that guides G (none: the standard GAN)", choices=xai_names, group="xai")
    xai_start: float = option(0.5, "fraction of the epochs after which guidance starts", range="in [0, 1]", group="xai")
    # the guidance settings (xaigan.settings.GuidanceSettings) go here, under their keys: alpha, xai_use, ...
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
            value = spec.coerce(getattr(self, spec.name))
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

    def guidance(self) -> GuidanceSettings:
        """The guidance settings this run asks for (validated; ``xai`` names the explainer)."""
        return GuidanceSettings.from_keys(self.to_dict(), start_epoch=self.xai_start_epoch, end_epoch=self.epochs)

    def _check_together(self) -> None:
        """Settings that are each valid but together mean the guidance never runs or cannot run."""
        if self.xai == "none":
            return
        if self.xai_start_epoch >= self.epochs:
            raise ConfigError(
                f"xai_start {self.xai_start} with {self.epochs} epochs starts the guidance after the last epoch: "
                "it would never run (use xai: none for a standard GAN)"
            )
        self.guidance()

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


def _unknown_key(key: str, known: set[str]) -> str:
    """``unknown config key 'lr_dd'``, with the closest known keys where some are close (``xaigan train --help``
    lists them all)."""
    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(k) for k in close)}?" if close else " (xaigan train --help lists them)"
    return f"unknown config key {key!r}{hint}"


_SCHEMA: list[Option] | None = None


def schema() -> list[Option]:
    """Every key of :class:`Config` in declaration order."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = options_of(Config)
    return _SCHEMA


def resolve(*overrides: Mapping[str, Any] | None) -> Config:
    """Defaults, then each override in order (later wins), validated.

    Args:
        overrides: mappings of keys to values (YAML files, ``--set`` assignments, flags), in order.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: an unknown key or a value that cannot be used.

    Example:
        >>> resolve({"epochs": 10}, {"epochs": 20, "xai": "saliency"}).epochs
        20
    """
    merged: dict[str, Any] = {}
    for layer in overrides:
        if layer:
            merged.update(layer)
    return Config.from_dict(merged)
