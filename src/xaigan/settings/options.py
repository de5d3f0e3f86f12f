"""Declared settings: a dataclass field made with :func:`option` carries its help, allowed values, range, check and
group; :func:`options_of` reads them back as :class:`Option` records that validate values, coerce strings from the
command line, and describe themselves for ``--help`` and the docs.

Both the run configuration (:class:`xaigan.config.Config`) and the guidance settings
(:class:`xaigan.settings.GuidanceSettings`) are declared this way, so a check is written once.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xaigan.errors import InputError


class ConfigError(InputError):
    """A configuration key or value that cannot be used."""


# Ranges: a name shown in the help and the check behind it.
RANGES: dict[str, Callable[[Any], bool]] = {
    "> 0": lambda v: v > 0,
    ">= 2": lambda v: v >= 2,
    ">= 0": lambda v: v >= 0,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in (0, 100]": lambda v: 0 < v <= 100,
}

Choices = tuple[str, ...] | Callable[[], tuple[str, ...]] | None


def option(
    default: Any,
    help: str,
    *,
    choices: Choices = None,
    range: str | None = None,
    check: Callable[[Any], None] | None = None,
    group: str = "",
    key: str | None = None,
    other: Callable[[Any], None] | None = None,
) -> Any:
    """A declared field.

    Args:
        default: the value when none is given.
        help: one line for ``--help`` and the docs.
        choices: the allowed values, or a callable that returns them (a registry's names, read when validating).
        range: one of :data:`RANGES`' names.
        check: a callable that raises :class:`ConfigError` for a bad value.
        group: the section of ``--help`` and the docs.
        key: the run configuration's key for a guidance setting (e.g. ``xai_use`` for ``use``); None: the setting
            is not a key of its own (the trainer derives it).
        other: a check for values outside ``choices`` that may still be allowed (your own model,
            ``package.module:function``); None: they are refused.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Toy:
        ...     steps: int = option(3, "how many", range="> 0")
        >>> options_of(Toy)[0].describe()
        'how many; > 0 (default: 3)'
    """
    if range is not None and range not in RANGES:
        raise ValueError(f"unknown range {range!r}")
    meta = {"help": help, "choices": choices, "range": range, "check": check, "group": group, "key": key}
    meta["other"] = other
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """One declared field, as validation, the CLI and the docs see it."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    choices: Choices
    range: str | None
    check: Callable[[Any], None] | None
    group: str
    key: str | None = None
    other: Callable[[Any], None] | None = None

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def validate(self, value: Any, name: str | None = None) -> None:
        """Raise :class:`ConfigError` (naming ``name``, default the field's) unless ``value`` is allowed."""
        if value is None:
            return
        name = name or self.name
        allowed = self.allowed()
        if allowed is not None and value not in allowed and self.other is not None:
            self.other(value)
        elif allowed is not None and value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.range is not None and not RANGES[self.range](value):
            raise ConfigError(f"{name} must be {self.range}, got {value!r}")
        if self.check is not None:
            self.check(value)

    def coerce(self, value: Any, name: str | None = None) -> Any:
        """``value`` cast to the field's type (strings from the command line, ints where floats are expected)."""
        name = name or self.name
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{name} must be of type {self.type.__name__}, got None")
        kind = self.type
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, bool):  # YAML reads `compile: true` as a boolean; its choices say
            return "true" if value else "false"
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}")

    def describe(self) -> str:
        """The help line with the allowed values or range and the default."""
        parts = [self.help]
        allowed = self.allowed()
        if allowed:
            parts.append("one of " + ", ".join(allowed))
        if self.range:
            parts.append(self.range)
        if self.default is None:  # unset: the help says what that means, or it means nothing is used
            return "; ".join(parts) + ("" if "default" in self.help else " (default: unset)")
        return "; ".join(parts) + f" (default: {self.default!r})"

    def renamed(self, name: str, group: str) -> Option:
        """This field under another name and group (a guidance setting as a key of the run configuration)."""
        return dataclasses.replace(self, name=name, group=group, key=None)


def options_of(cls: type) -> list[Option]:
    """Every field of the dataclass ``cls`` declared with :func:`option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = bool(args) and type(None) in args
        kind = next(a for a in args if a is not type(None)) if optional else hint
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
                meta.get("key"),
                meta.get("other"),
            )
        )
    return out
