"""The checks behind config values: ranges, allowed names from the registries, and values that name files and
folders (datasets, priors, augmentation policies, run and grid names)."""

from __future__ import annotations

import re

from xaigan.settings import ConfigError


def model_names() -> tuple[str, ...]:
    from xaigan import models

    return tuple(models.available())


def check_own_model(value: str) -> None:
    """A model outside the registered names must be ``package.module:function`` that imports (one error line)."""
    from xaigan import models

    if not models.is_import_path(value):
        raise ConfigError(
            f"model must be one of {', '.join(models.available())} or package.module:function; got {value!r}"
        )
    try:
        models.load_builder(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def xai_names() -> tuple[str, ...]:
    from xaigan import explain

    return ("none", *explain.available())


def feature_names() -> tuple[str, ...]:
    from xaigan.metrics import features

    return tuple(features.available())


def check_dataset(value: str) -> None:
    from xaigan import data

    if not data.is_known(value):
        raise ConfigError(f"dataset must be one of {', '.join(data.available())} or folder:PATH; got {value!r}")


def check_policy(value: str) -> None:
    from xaigan import augment

    try:
        augment.parse_policy(value)
    except ValueError as exc:
        raise ConfigError(f"diffaugment: {exc}") from exc


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")


def check_name(value: str, what: str = "name") -> str:
    """A name that becomes one folder or file name: letters, digits, ``_.+-``, not starting with a dot or dash and
    without ``..``, so it can neither leave its parent folder nor hide in it."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} must be 1-200 letters, digits or _.+- (starting with a letter or digit, no '..'): "
            "it names a folder"
        )
    return value
