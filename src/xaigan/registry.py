"""One registry style for every named component (datasets, models, explainers, feature extractors, augmentations).

A :class:`Registry` maps names to entries; registering a name twice is an error (a silent replacement would make
which component runs depend on import order), and looking up an unknown name gives one message that lists the
known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from xaigan.errors import InputError

T = TypeVar("T")


class UnknownNameError(InputError, KeyError):
    """A name no entry is registered under: a lookup error and a bad value at once, so callers catching either
    see it; ``str()`` is the plain message (not KeyError's quoted repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named entries of one kind; ``kind`` appears in error messages (``"explainer"``, ``"model"``...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name already taken raises ``ValueError``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object and returns it unchanged."""

        def add(entry: T) -> T:
            return self.register(name, entry)

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that register temporary entries)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
