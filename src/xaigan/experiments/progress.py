"""The parent's view of a grid's runs trained in worker processes: one bar per run in flight and the grid's ETA.

Workers send each run's :class:`xaigan.train.progress.StepProgress` about once a second through a queue; a thread
here draws them (a bar per run in a terminal, a line every ~30 s elsewhere) and estimates when the grid ends.
"""

from __future__ import annotations

import queue as queue_mod
import statistics
import sys
import threading
import time
from typing import Any, TextIO

from tqdm import tqdm

from xaigan.train.progress import LINE_EVERY_S, StepProgress, clock


class GridProgress:
    """Shows the progress that workers send for a grid's runs.

    Args:
        name: the grid's name.
        labels: a label (``"saliency seed 3"``) for each run folder the workers train.
        workers: how many runs train at once.
        show: draw anything at all (``False``: only :meth:`eta` and :attr:`latest` are kept).
        stream: the console (default ``sys.stderr``).
    """

    def __init__(
        self, name: str, labels: dict[str, str], workers: int, *, show: bool = True, stream: TextIO | None = None
    ) -> None:
        self.name, self.labels, self.workers = name, labels, max(1, workers)
        self.stream = stream if stream is not None else sys.stderr
        self.show = show
        self.interactive = show and bool(getattr(self.stream, "isatty", lambda: False)())
        self.latest: dict[str, StepProgress] = {}
        self.bars: dict[str, tqdm] = {}
        self._next_line = time.perf_counter() + LINE_EVERY_S
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def receive(self, run_dir: str, p: StepProgress) -> None:
        """Take one progress event of the run in ``run_dir``."""
        with self._lock:
            self.latest[run_dir] = p
            if self.interactive:
                self._draw(run_dir, p)
            now = time.perf_counter()
            if self.show and not self.interactive and now >= self._next_line:
                self._next_line = now + LINE_EVERY_S
                print(self.line(), file=self.stream, flush=True)

    def _draw(self, run_dir: str, p: StepProgress) -> None:
        bar = self.bars.get(run_dir)
        if bar is None:
            label = self.labels.get(run_dir, p.run)
            bar = tqdm(total=p.total, initial=p.step, desc=label, position=len(self.bars), file=self.stream, leave=True)
            self.bars[run_dir] = bar
        bar.update(p.step - bar.n)
        eta = self.eta()
        bar.set_postfix_str(f"epoch {min(p.epoch + 1, p.epochs)}/{p.epochs}, grid ~{clock(eta)} left", refresh=True)

    def eta(self) -> float | None:
        """Seconds until every run in :attr:`labels` has trained: the runs in flight at their own rates, the runs
        not yet started at the mean seconds a run has taken or is taking, spread over the workers."""
        if not self.latest:
            return None
        flying = [p for p in self.latest.values() if not p.finished]
        left = [p.remaining for p in flying if p.remaining is not None]
        if len(left) < len(flying):
            return None
        per_run = [p.elapsed * p.total / p.trained_here for p in self.latest.values() if p.trained_here > 0]
        waiting = len(self.labels) - len(self.latest)
        queued = waiting * statistics.fmean(per_run) if per_run and waiting else 0.0
        busy = max(left, default=0.0)
        return max(busy, (sum(left) + queued) / self.workers)

    def line(self) -> str:
        """One line on every run in flight and the grid's ETA."""
        flying = [(self.labels.get(r, p.run), p) for r, p in self.latest.items() if not p.finished]
        done = sum(p.finished for p in self.latest.values())
        parts = [
            f"{label}: epoch {min(p.epoch + 1, p.epochs)}/{p.epochs}, step {p.step}/{p.total}, "
            f"~{clock(p.remaining)} left"
            for label, p in flying
        ]
        head = f"{self.name}: {done} of {len(self.labels)} runs trained"
        return "; ".join([head, *parts]) + f"; grid ~{clock(self.eta())} left"

    def follow(self, source: Any) -> None:
        """Read ``(run_dir, StepProgress)`` pairs from the queue ``source`` in a thread until :meth:`close`."""

        def pump() -> None:
            while not self._stop.is_set():
                try:
                    run_dir, p = source.get(timeout=0.2)
                except queue_mod.Empty:
                    continue
                except (EOFError, OSError):  # the queue went away with the pool
                    return
                self.receive(run_dir, p)

        self._thread = threading.Thread(target=pump, name="xaigan-grid-progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following and close the bars."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for bar in self.bars.values():
            bar.close()
