"""Stopping a run by signal: SIGINT/SIGTERM become a request to stop at the next step boundary."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """A run was stopped by a signal (and checkpointed); raised by callers that drive several runs (grids).

    Args:
        message: what stopped where.
        signal_name: ``"SIGINT"``, ``"SIGTERM"`` or None.

    Example:
        >>> exc = StopRequested("stopped in runs/grid/normal/seed_0 at step 120", "SIGTERM")
        >>> exc.signal_name
        'SIGTERM'
    """

    def __init__(self, message: str, signal_name: str | None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


@contextlib.contextmanager
def deferred_stop_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a request to stop at the next step boundary (the list receives the signal).

    A step interrupted half-way (D updated, G not; Adam's per-parameter loop cut short) cannot be resumed exactly,
    so the first signal only asks; a second SIGINT interrupts at once (KeyboardInterrupt, no checkpoint: the
    last epoch's stands). Outside the main thread signals cannot be handled and nothing changes.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def ask(signum: int, _frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("%s: stopping after this step (again to stop at once)", signal.Signals(signum).name)

    # A signal the parent told us to ignore (``nohup``, a background job's SIGINT) stays ignored.
    previous = {s: signal.signal(s, ask) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
