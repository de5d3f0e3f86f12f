"""How long one training step of a config takes on this machine, measured before a budgeted job commits to a plan."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass

from xaigan.config import Config
from xaigan.process import fixed_threads
from xaigan.rundir import RunDir
from xaigan.train.factory import build_parts
from xaigan.train.step import gan_step


@dataclass(frozen=True)
class StepTime:
    """A measured training step: its mean ``seconds`` (a run's time is the sum of its steps') and the
    ``steps_per_epoch`` of the run's data."""

    seconds: float
    steps_per_epoch: int


def time_step(
    cfg: Config, *, guided: bool = False, seconds: float = 2.0, warmup: int = 3, threads: int | None = None
) -> StepTime:
    """The mean time of one training step of ``cfg`` (D step, G step, weight average), measured in this process.

    Args:
        cfg: the run's config (its data, nets, precision and guidance are built as a run would build them).
        guided: time the step with the config's guidance on (as in the epochs after ``xai_start``).
        seconds: how long to time, after ``warmup`` steps.
        warmup: steps not timed (first calls allocate memory and pick kernels).
        threads: the number of threads PyTorch may use meanwhile (as a grid's worker would); ``None``: as set.

    Returns:
        The step's mean seconds (its batch's fetch included) and the steps of one epoch; the trained weights are
        thrown away and no file is written.

    Example:
        >>> time_step(Config(dataset="mnist", batch_size=64), seconds=1.0)  # doctest: +SKIP
        StepTime(seconds=0.034, steps_per_epoch=79)
    """
    with fixed_threads(threads), tempfile.TemporaryDirectory() as scratch:
        tr = build_parts(cfg, RunDir(scratch))
        guide = tr.guidance if guided else None
        times: list[float] = []
        deadline = None
        while deadline is None or time.perf_counter() < deadline:
            t0 = time.perf_counter()  # each step timed with the fetch of its batch, as the trainer runs it
            for real in tr.loader.batches(0, 0):
                gan_step(tr.G, tr.D, tr.opt_g, tr.opt_d, real, tr.cfg, tr.augment, guide)
                if tr.ema is not None:
                    tr.ema.update(tr.G)
                now = time.perf_counter()
                if warmup > 0:
                    warmup -= 1
                else:
                    times.append(now - t0)
                    deadline = deadline or now + seconds
                    if now >= deadline:
                        break
                t0 = time.perf_counter()
        return StepTime(float(statistics.fmean(times)), len(tr.loader))
