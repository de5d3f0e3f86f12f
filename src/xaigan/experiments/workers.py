"""Train a grid's runs in several processes at once, the cores split between them.

Two processes with one thread each finish more GAN steps per second on 2 cores than one process with two threads
(small matmuls do not scale across threads; see ``docs/benchmarks.md``). Each worker trains whole runs (new ones, or
resumes stopped ones), one at a time, with ``torch.set_num_threads(threads)``; what a run computes does not depend on
which worker trains it. A worker that dies leaves its run's last checkpoint: the next invocation resumes it.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from xaigan.config import Config
from xaigan.experiments.grid import RunSpec
from xaigan.experiments.prepare import prepare_run
from xaigan.train import StopRequested


class WorkerDiedError(RuntimeError):
    """A worker process died (killed, out of memory); finished runs are kept, unfinished ones resume next time."""


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _train(cfg: dict[str, Any], run_dir: str, state: str, threads: int) -> dict[str, Any]:
    """In a worker: train one run to its end (or to a signal); returns the trainer's summary."""
    torch.set_num_threads(threads)
    trainer = prepare_run(Config.from_dict(cfg), run_dir, resume=state == "partial", overwrite=state == "started")
    trainer.cfg.progress = False
    return trainer.fit()


def train_parallel(todo: list[tuple[RunSpec, str]], workers: int, report: Any = print) -> None:
    """Train every ``(spec, state)`` in ``todo`` with ``workers`` processes; ``report`` gets one line per run.

    Raises :class:`xaigan.train.StopRequested` if a run was stopped by a signal (it checkpointed) and
    :class:`WorkerDiedError` if a worker died; runs finished before either are kept.
    """
    threads = threads_per_worker(workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads and open files
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(_train, spec.cfg.to_dict(), str(spec.run_dir), state, threads): spec for spec, state in todo
        }
        try:
            _collect(futures, report)
        except BaseException:
            for future in futures:
                future.cancel()  # queued runs stay new; running ones finish or checkpoint on the signal
            raise


def _collect(futures: dict, report: Any) -> None:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for future in done:
            spec = futures[future]
            try:
                summary = future.result()
            except BrokenProcessPool:
                raise WorkerDiedError(
                    f"a worker process died while training {Path(spec.run_dir)}; finished runs are kept, "
                    "run the same command again to resume the others"
                ) from None
            if summary.get("interrupted"):
                raise StopRequested(f"stopped in {spec.run_dir} at step {summary['step']}", summary.get("signal"))
            report(f"trained {spec.cell} seed {spec.seed}: {summary['steps']} steps, {summary['train_seconds']:.0f} s")
