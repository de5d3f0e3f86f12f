"""Process-wide settings a job changes for a while, and messages a process says once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

_said: set[tuple[str, str]] = set()


@contextlib.contextmanager
def fixed_threads(n: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` inside the block (``None``: left as they are), restored after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def log_once(logger: logging.Logger, level: int, message: str) -> None:
    """Log ``message`` at ``level`` the first time this process says it to ``logger``, at DEBUG after (a job that
    loads the same data or builds the same run several times says so once)."""
    key = (logger.name, message)
    logger.log(logging.DEBUG if key in _said else level, "%s", message)
    _said.add(key)
