"""Which runs of a grid an invocation trains, and which it skips: :func:`plan_runs`, the plan
:func:`xaigan.experiments.run_grid` follows, and what ``reproduce --dry-run`` shows without doing it
(:func:`plan_grid`): each run's state, how far the unfinished ones got, and about how long the rest takes at the pace
of the runs already finished. Reads run folders and the record; writes nothing."""

from __future__ import annotations

import heapq
import json
import logging
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from xaigan.experiments.grid import Grid, RunSpec
from xaigan.experiments.record import check_same_config, is_recorded, recorded_path
from xaigan.rundir import LAST, PREVIOUS, RunDir

log = logging.getLogger(__name__)

UNFINISHED = ("new", "started", "partial")  # the run folder states left to train


@dataclass(frozen=True)
class RunPlan:
    """The runs one invocation asks for (:func:`plan_runs`), in the grid's order.

    Args:
        runs: every run asked for; a recorded one's ``run_dir`` is its folder in the record.
        recorded: ``(cell, seed)`` of the runs recorded with the same settings: skipped, their record stands in.
    """

    runs: tuple[RunSpec, ...]
    recorded: frozenset[tuple[str, int]] = frozenset()

    @property
    def here(self) -> list[RunSpec]:
        """The runs not recorded: their folders in the output folder, trained, resumed or only finished here."""
        return [s for s in self.runs if (s.cell, s.seed) not in self.recorded]

    def to_train(self) -> list[RunSpec]:
        """The runs here left to train (new, started or partial), every run folder here checked first.

        Returns:
            The runs to train, in the grid's order.

        Raises:
            xaigan.config.ConfigError: a run folder holds a run trained with other settings than the grid's.
        """
        here = self.here
        for spec in here:
            check_same_config(spec)
        return [spec for spec in here if RunDir(spec.run_dir).state() in UNFINISHED]


def plan_runs(
    grid: Grid, out: Path, *, budget: str, seeds: list[int], cells: list[str] | None, record: str | Path | None
) -> RunPlan:
    """The runs of ``grid`` to do into ``out``, those in ``record`` (finished with the same settings) skipped.

    Args:
        grid: the grid.
        out: the grid's output folder.
        budget: the name of one of the grid's budgets.
        seeds: the seeds to run every cell with.
        cells: only these cells, or None for all.
        record: a folder of finished runs' small artefacts (:mod:`xaigan.experiments.record`), or None.

    Returns:
        The plan; :meth:`RunPlan.to_train` says which runs to train.

    Raises:
        xaigan.config.ConfigError: a run in ``record`` was trained with other settings than the grid's.
    """
    specs = grid.runs(out, budget, seeds, cells)
    if record is None:
        return RunPlan(tuple(specs))
    recorded = {(s.cell, s.seed) for s in specs if is_recorded(record, s)}
    if recorded:
        log.info("%d of %d runs already recorded in %s", len(recorded), len(specs), record)
    runs = [replace(s, run_dir=recorded_path(record, s)) if (s.cell, s.seed) in recorded else s for s in specs]
    return RunPlan(tuple(runs), frozenset(recorded))


@dataclass(frozen=True)
class PlannedRun:
    """One run of the invocation. ``state``: ``recorded`` (in the record: skipped) or a :meth:`RunDir.state`;
    ``done``: the fraction of its training finished (the checkpoint's, or the last logged epoch's while a process
    trains it now: ``holder`` is that process's pid)."""

    cell: str
    seed: int
    state: str
    epochs: int
    done: float
    holder: int | None = None

    @property
    def left(self) -> float:
        """The fraction of the run's training left (0 for a trained run)."""
        return 0.0 if self.state in ("recorded", "done", "trained") else 1.0 - self.done


def _checkpoint_done(run: RunDir, epochs: int) -> float:
    """The fraction of training a run resumes from: its checkpoint's epochs and position (read without loading the
    weights: ``mmap``), 0 if none is readable."""
    for name in (LAST, PREVIOUS):
        path = run.checkpoint(name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            epoch, position, step = int(state["epoch"]), int(state["position"]), int(state["step"])
        except (OSError, RuntimeError, KeyError, TypeError, ValueError):
            continue
        per_epoch = (step - position) / epoch if epoch else 0
        return min(1.0, (epoch + (position / per_epoch if per_epoch else 0.0)) / epochs)
    return 0.0


def _logged_done(run: RunDir, epochs: int) -> float:
    """The fraction of training a run in progress has logged: the last step record's epoch, as epochs finished."""
    last = None
    try:
        with open(run.metrics_path) as f:
            for line in f:
                if '"sec_per_step"' in line:
                    last = line
        return min(1.0, json.loads(last)["epoch"] / epochs) if last else 0.0
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def plan_grid(
    grid: Grid,
    out: str | Path,
    *,
    budget: str,
    seeds: list[int],
    record: str | Path | None = None,
    cells: list[str] | None = None,
) -> list[PlannedRun]:
    """Every run ``reproduce`` would consider, in its order (seed-major), with its state and progress."""
    planned = []
    for spec in grid.runs(Path(out), budget, seeds, cells):
        epochs = spec.cfg.epochs
        if record is not None and RunDir(recorded_path(record, spec)).state() == "done":
            planned.append(PlannedRun(spec.cell, spec.seed, "recorded", epochs, 1.0))
            continue
        run = RunDir(spec.run_dir)
        state, holder = run.state(), run.holder()
        if state in ("done", "trained"):
            done = 1.0
        elif holder is not None:
            done = _logged_done(run, epochs)
        else:
            done = _checkpoint_done(run, epochs) if state == "partial" else 0.0
        planned.append(PlannedRun(spec.cell, spec.seed, state, epochs, done, holder))
    return planned


def seconds_per_run(specs: list[RunSpec], record: str | Path | None = None) -> dict[str, float]:
    """Per cell, the median wall time of its finished runs (training plus the final evaluation, from ``summary.json``
    and ``eval.json``), from the record and the run folders; cells without a finished run are left out."""
    times: dict[str, list[float]] = {}
    for spec in specs:
        for folder in ([recorded_path(record, spec)] if record is not None else []) + [spec.run_dir]:
            run = RunDir(folder)
            if run.state() != "done":
                continue
            summary, evaluation = run.read_summary(), run.read_eval()
            seconds = float(summary.get("train_seconds", math.nan)) + float(evaluation.get("seconds", 0.0))
            if math.isfinite(seconds):
                times.setdefault(spec.cell, []).append(seconds)
            break
    return {cell: statistics.median(values) for cell, values in times.items()}


def time_left(planned: list[PlannedRun], per_run: dict[str, float], workers: int) -> dict[str, Any]:
    """When the runs left would finish on ``workers`` workers that each take the next run in order as they come free
    (as ``reproduce`` does), the runs in progress first: ``seconds`` (None if no run left has a known duration),
    ``work`` (the seconds of training left, summed) and ``unknown``, the runs left of cells with no finished run."""
    left = sorted((r for r in planned if r.left > 0), key=lambda r: r.holder is None)
    known = [per_run[r.cell] * r.left for r in left if r.cell in per_run]
    unknown = [r for r in left if r.cell not in per_run]
    free = [0.0] * max(1, workers)
    for seconds in known:
        heapq.heapreplace(free, free[0] + seconds)
    return {"seconds": max(free) if known else None, "work": sum(known), "unknown": unknown}
