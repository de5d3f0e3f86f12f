"""Run configuration: every default in one place, YAML and ``key=value`` overrides, one validation pass.

Keys are flat. Unknown keys and invalid values are rejected before any work starts, with a message that
names the key and what is allowed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "fashion-mnist",
    "data_dir": None,
    "fraction": 1.0,
    "subset": "random",
    "split": "all",
    # model
    "model": "mlp",
    "noise_dim": 100,
    # optimisation (the paper's standard GAN)
    "epochs": 30,
    "batch_size": 128,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "beta1": 0.5,
    "beta2": 0.99,
    "label_real": 0.9,
    "label_fake": 0.1,
    "g_target": 0.9,
    "g_clip": 10.0,
    "d_steps": 1,
    "drop_last": False,
    # run
    "seed": 0,
    "device": "auto",
    "name": None,
    "log_every": 1,
    "sample_every": 1,
    "checkpoint_every": 1,
    "progress": True,
    "tensorboard": True,
    # xAI guidance (issue 3)
    "xai": "none",
    "alpha": 0.2,
    "xai_start": 0.5,
    "xai_select": "fake",
    "xai_threshold": 0.5,
    "xai_normalize": "batch-minmax",
    "xai_target": "prob",
    "explain_mode": "eval",
    "xai_baselines": 128,
    "xai_steps": 16,
    "lime_samples": 100,
    "lime_segmentation": "quickshift",
    "prior": None,
    "prior_mode": "multiply",
    # augmentation (issue 5)
    "diffaugment": "",
    # evaluation (issue 4)
    "eval_every": 0,
    "eval_n": 10000,
    "eval_features": "domain",
    "eval_reference": "all",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "subset": ("random", "first"),
    "split": ("all", "train", "test"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "xai_select": ("fake", "all"),
    "xai_normalize": ("batch-minmax", "selected-minmax", "sample-minmax"),
    "xai_target": ("prob", "logit"),
    "explain_mode": ("eval", "train"),
    "lime_segmentation": ("quickshift", "grid"),
    "prior_mode": ("multiply", "add", "replace"),
    "eval_features": ("domain", "inception"),
    "eval_reference": ("all", "train", "test"),
}


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


def _positive(key: str, value: Any) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")


def _non_negative(key: str, value: Any) -> None:
    if not value >= 0:
        raise ConfigError(f"{key} must be >= 0, got {value!r}")


def _unit_open_closed(key: str, value: Any) -> None:
    if not 0 < value <= 1:
        raise ConfigError(f"{key} must be in (0, 1], got {value!r}")


def _unit_closed(key: str, value: Any) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{key} must be in [0, 1], got {value!r}")


RANGES: dict[str, Callable[[str, Any], None]] = {
    "fraction": _unit_open_closed,
    "noise_dim": _positive,
    "epochs": _positive,
    "batch_size": _positive,
    "lr_g": _positive,
    "lr_d": _positive,
    "beta1": _unit_closed,
    "beta2": _unit_closed,
    "label_real": _unit_closed,
    "label_fake": _unit_closed,
    "g_target": _unit_closed,
    "g_clip": _non_negative,
    "d_steps": _positive,
    "log_every": _positive,
    "sample_every": _positive,
    "checkpoint_every": _positive,
    "alpha": _non_negative,
    "xai_start": _unit_closed,
    "xai_threshold": _unit_closed,
    "xai_baselines": _positive,
    "xai_steps": _positive,
    "lime_samples": _positive,
    "eval_every": _non_negative,
    "eval_n": _positive,
}


def _coerce(key: str, value: Any) -> Any:
    """Cast ``value`` to the type of the key's default (ints stay ints, ``None`` defaults accept strings)."""
    default = DEFAULTS[key]
    if value is None or default is None:
        return value
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be of type {kind.__name__}, got {value!r}")


def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``cfg``; raise :class:`ConfigError` naming the first bad key."""
    from xaigan import data, models  # local: keep `import xaigan.config` light

    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(DEFAULTS))}")
    out = {key: _coerce(key, cfg[key]) for key in cfg}
    for key, allowed in CHOICES.items():
        if out[key] not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {out[key]!r}")
    for key, check in RANGES.items():
        check(key, out[key])
    if not data.is_known(out["dataset"]):
        raise ConfigError(
            f"dataset must be one of {', '.join(data.available())} or folder:PATH; got {out['dataset']!r}"
        )
    if out["model"] not in models.available():
        raise ConfigError(f"model must be one of {', '.join(models.available())}; got {out['model']!r}")
    xai_names = ("none", *_explainers())
    if out["xai"] not in xai_names:
        raise ConfigError(f"xai must be one of {', '.join(xai_names)}; got {out['xai']!r}")
    if out["diffaugment"]:
        from xaigan import augment

        augment.parse_policy(out["diffaugment"])
    return out


def _explainers() -> tuple[str, ...]:
    try:
        from xaigan import explain

        return tuple(explain.available())
    except (ImportError, AttributeError):  # explainers not importable: only "none" is valid
        return ()


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``0.35``, ``true``, ``null``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        out[key] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, got {type(loaded).__name__}")
    return loaded


def resolve(*overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults, then each override in order (later wins), validated."""
    cfg = copy.deepcopy(DEFAULTS)
    for layer in overrides:
        if layer:
            cfg.update(layer)
    return validate(cfg)


def dump(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    from xaigan.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(dict(cfg), sort_keys=True))
