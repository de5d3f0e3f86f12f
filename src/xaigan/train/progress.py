"""A run's progress where its user looks: a bar in a terminal, a line every ~30 s elsewhere, and in the run's log.

Training may run in this process (``xaigan train``) or in a worker of a grid (``xaigan reproduce``, ``xaigan demo``),
whose parent draws the bars: a :class:`ProgressMeter` then sends each :class:`StepProgress` to a ``sink`` about once a
second instead of drawing. Whatever the display, the run's ``train.log`` gets a progress line every ~30 s.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_S = 30.0  # a progress line in a log or a non-terminal output
SEND_EVERY_S = 1.0  # a progress event to a parent process

progress_log = logging.getLogger("xaigan.progress")
progress_log.propagate = False  # progress lines go to run logs only; the console gets a bar or its own lines


def clock(seconds: float | None) -> str:
    """``seconds`` as ``h:mm:ss`` or ``m:ss``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class StepProgress:
    """Where one run's training stands.

    Attributes:
        run: the run's name (its folder's path relative to the grid, or its folder's name).
        step: steps trained so far (resumed runs count the steps before the resume).
        total: steps the run trains in all.
        epoch: the epoch under way (0-based).
        epochs: epochs the run trains in all.
        elapsed: seconds of training in this process.
        trained_here: steps trained in this process (the rate's numerator).
        finished: whether the run's training ended.
    """

    run: str
    step: int
    total: int
    epoch: int
    epochs: int
    elapsed: float
    trained_here: int
    finished: bool = False

    @property
    def remaining(self) -> float | None:
        """Seconds left at this process's rate so far; ``None`` before the first step."""
        if self.finished:
            return 0.0
        if self.trained_here <= 0:
            return None
        return (self.total - self.step) * self.elapsed / self.trained_here

    def line(self) -> str:
        """One line for a log: run, epoch, step, elapsed and remaining time."""
        return (
            f"{self.run}: epoch {min(self.epoch + 1, self.epochs)}/{self.epochs}, step {self.step}/{self.total}, "
            f"{clock(self.elapsed)} elapsed, ~{clock(self.remaining)} left"
        )


class ProgressMeter:
    """Follows one run's steps (:meth:`update` after each) and shows them.

    Args:
        run: the run's name, as lines and bars show it.
        total: steps the run trains in all.
        initial: steps trained before this process started (a resumed run).
        epochs: epochs the run trains in all.
        show: show progress on the console: a bar where ``stream`` is a terminal, a line every
            :data:`LINE_EVERY_S` seconds elsewhere.
        sink: where to send a :class:`StepProgress` about every :data:`SEND_EVERY_S` seconds and at the end (a
            grid's worker sends to its parent); nothing is shown on the console then.
        stream: the console (default ``sys.stderr``).
    """

    def __init__(
        self,
        run: str,
        total: int,
        initial: int,
        epochs: int,
        *,
        show: bool = True,
        sink: Callable[[StepProgress], None] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.run, self.total, self.epochs = run, total, epochs
        self.step, self.epoch = initial, 0
        self.sink = sink
        self.stream = stream if stream is not None else sys.stderr
        self.show = show and sink is None
        interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = (
            tqdm(total=total, initial=initial, desc=run, dynamic_ncols=True, file=self.stream)
            if self.show and interactive
            else None
        )
        self.start = time.perf_counter()
        self.trained_here = 0
        self._next_line = self.start + LINE_EVERY_S
        self._next_send = self.start

    def snapshot(self, finished: bool = False) -> StepProgress:
        """Where the run stands now."""
        return StepProgress(
            self.run,
            self.step,
            self.total,
            self.epoch,
            self.epochs,
            time.perf_counter() - self.start,
            self.trained_here,
            finished,
        )

    def update(self, step: int, epoch: int, stats: dict[str, float] | None = None) -> None:
        """Record that ``step`` steps are done and ``epoch`` is under way; show or send if it is time. ``stats``:
        the step's losses (``d_loss``, ``g_loss``), shown on the bar every tenth step."""
        self.trained_here += step - self.step
        if self.bar is not None:
            self.bar.update(step - self.step)
            if stats and step % 10 == 0:
                self.bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}", refresh=False)
        self.step, self.epoch = step, epoch
        now = time.perf_counter()
        if self.sink is not None and now >= self._next_send:
            self._next_send = now + SEND_EVERY_S
            self.sink(self.snapshot())
        if now >= self._next_line:
            self._next_line = now + LINE_EVERY_S
            line = self.snapshot().line()
            progress_log.info(line)
            if self.show and self.bar is None:
                print(line, file=self.stream, flush=True)

    def close(self, finished: bool = True) -> None:
        """End the display; ``finished``: the run trained to its end (not stopped by a signal)."""
        if self.bar is not None:
            self.bar.close()
        done = self.snapshot(finished=finished)
        progress_log.info(done.line() + (" (finished)" if finished else " (stopped)"))
        if self.sink is not None:
            self.sink(done)
