"""What trains a grid's runs: one interface, :class:`Executor`, and three of them. :class:`SerialExecutor` trains
one run after the other in this process; :class:`PoolExecutor` several at once in local worker processes
(:mod:`xaigan.experiments.workers`); :class:`RayExecutor` each as a Ray task (:mod:`xaigan.experiments.cluster`).
:func:`make_executor` picks one by the name ``reproduce --executor`` takes.

Each reports every run it trained to an ``on_done`` callback in this process (the grid evaluates and records the
run there) while the others train on, so a grid stopped later keeps its finished runs scored and recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from xaigan import train
from xaigan.errors import InputError
from xaigan.experiments.cluster import train_on_ray
from xaigan.experiments.grid import RunSpec
from xaigan.experiments.plan import UNFINISHED
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.workers import auto_workers, train_parallel
from xaigan.rundir import RunDir

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")  # the names make_executor takes


class Executor(Protocol):
    """Trains a grid's runs; ``name`` (``local`` or ``ray``) is what the grid's ``grid.json`` records."""

    name: str

    def run(
        self, todo: list[RunSpec], on_done: Callable[[RunSpec], None], *, grid: str, progress: bool
    ) -> list[dict[str, Any]]:
        """Train every run in ``todo`` (new ones from the start, stopped ones from their last checkpoint).

        Args:
            todo: the runs to train, in the grid's order.
            on_done: called here with each run's spec as soon as it is trained.
            grid: the grid's name, for progress.
            progress: show progress bars.

        Returns:
            The runs that failed on every try, ``{"cell", "seed", "run_dir", "error"}`` each (the others trained).

        Raises:
            xaigan.train.StopRequested: a run was stopped by a signal (it is checkpointed).
        """
        ...


def _say(progress: bool) -> Callable[[str], Any]:
    """Where an executor's one line per run goes: above the progress bars, or to the log when they are hidden."""
    return tqdm.write if progress else log.info


class SerialExecutor:
    """Trains the runs one after the other in this process, with its threads, each showing its own progress."""

    name = "local"

    def run(
        self, todo: list[RunSpec], on_done: Callable[[RunSpec], None], *, grid: str, progress: bool
    ) -> list[dict[str, Any]]:
        """See :meth:`Executor.run`; a failing run raises here, so nothing is returned as failed.

        Args:
            todo: the runs to train, in the grid's order.
            on_done: called with each run's spec as soon as it is trained.
            grid: the grid's name, for progress.
            progress: show progress bars.

        Returns:
            No failed run.
        """
        bar = tqdm(todo, desc=grid, disable=not progress, unit="run")
        for spec in bar:
            run = RunDir(spec.run_dir)
            state = run.state()
            bar.set_postfix_str(f"{spec.cell} seed {spec.seed} ({state})")
            if state in UNFINISHED:
                # "started": killed before its first checkpoint, nothing to resume: train it from the start again.
                resume, overwrite = state == "partial", state == "started"
                trainer = prepare_run(spec.cfg, run, resume=resume, overwrite=overwrite, progress=progress)
                summary = trainer.fit()
                if summary.get("interrupted"):
                    raise train.StopRequested(f"stopped in {run.path} at step {summary['step']}", summary.get("signal"))
            on_done(spec)
        return []


@dataclass(frozen=True)
class PoolExecutor:
    """Trains ``workers`` runs at a time in local worker processes (:func:`xaigan.experiments.workers.train_parallel`,
    the cores split between them). ``"auto"``: :func:`xaigan.experiments.workers.auto_workers`. With one worker, or
    one run to train, it trains in this process (:class:`SerialExecutor`), where a pool would only add its start-up.

    Args:
        workers: processes at once, or ``"auto"``.
    """

    workers: int | str = "auto"
    name = "local"

    def run(
        self, todo: list[RunSpec], on_done: Callable[[RunSpec], None], *, grid: str, progress: bool
    ) -> list[dict[str, Any]]:
        """See :meth:`Executor.run`; a worker that dies stops the grid, so nothing is returned as failed.

        Args:
            todo: the runs to train, in the grid's order.
            on_done: called here with each run's spec as soon as its worker trained it.
            grid: the grid's name, for progress.
            progress: show progress bars.

        Returns:
            No failed run.

        Raises:
            xaigan.experiments.workers.WorkerDiedError: a worker process died.
        """
        workers = auto_workers([spec.cfg for spec in todo]) if self.workers == "auto" else int(self.workers)
        if workers <= 1 or len(todo) <= 1:
            return SerialExecutor().run(todo, on_done, grid=grid, progress=progress)
        train_parallel(todo, workers, report=_say(progress), on_done=on_done, name=grid, progress=progress)
        return []


@dataclass(frozen=True)
class RayExecutor:
    """Trains each run as a Ray task, on this machine or a Ray cluster
    (:func:`xaigan.experiments.cluster.train_on_ray`); a run failing every try is returned as failed while the others
    go on.

    Args:
        options: :func:`xaigan.experiments.cluster.train_on_ray`'s options (``address``, ``retries``,
            ``cpus_per_run``, ``gpus_per_run``, ``runtime_env``).
    """

    options: dict[str, Any] = field(default_factory=dict)
    name = "ray"

    def run(
        self, todo: list[RunSpec], on_done: Callable[[RunSpec], None], *, grid: str, progress: bool
    ) -> list[dict[str, Any]]:
        """See :meth:`Executor.run`.

        Args:
            todo: the runs to train, in the grid's order.
            on_done: called here with each run's spec as soon as its task trained it.
            grid: the grid's name, for progress.
            progress: show progress bars.

        Returns:
            The runs that failed on every try.
        """
        with tqdm(total=len(todo), desc=f"{grid} (Ray)", disable=not progress, unit="run") as bar:
            return train_on_ray(
                todo, **self.options, report=_say(progress), on_done=on_done, progress=lambda i, n: bar.update(1)
            )


def make_executor(
    name: str = "local", *, workers: int | str = 1, ray_options: dict[str, Any] | None = None
) -> Executor:
    """The executor ``name`` stands for: ``local`` (one run at a time in this process, or ``workers`` at once in
    worker processes) or ``ray``.

    Args:
        name: ``local`` or ``ray``.
        workers: ``local``: runs trained at once in separate processes, or ``"auto"``.
        ray_options: ``ray``: the options of :class:`RayExecutor`.

    Returns:
        The executor.

    Raises:
        xaigan.errors.InputError: an unknown name.

    Example:
        >>> make_executor("local", workers="auto")
        PoolExecutor(workers='auto')
    """
    if name == "ray":
        return RayExecutor(dict(ray_options or {}))
    if name == "local":
        return SerialExecutor() if workers == 1 else PoolExecutor(workers)
    raise InputError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
