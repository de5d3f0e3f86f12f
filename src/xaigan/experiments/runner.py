"""Run a grid in three steps: plan which runs to train and which are recorded already (skipped;
:func:`xaigan.experiments.plan.plan_runs`), train them on an executor (:mod:`xaigan.experiments.executors`), and
finish each: evaluate, record, collect (:class:`xaigan.experiments.finish.Finisher`). Finished runs are skipped and
unfinished ones resumed, so the same call continues an interrupted grid.

Each run is evaluated and recorded as soon as it is trained, and runs trained before an interruption but not yet
evaluated are scored and recorded first, not after hours of other runs' training (which may be interrupted again).
Runs that fail on every try (Ray) are written to ``grid.json`` and raised as :class:`RunsFailedError` after every
other run is finished, evaluated and recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xaigan.errors import RunError
from xaigan.experiments.executors import Executor, SerialExecutor
from xaigan.experiments.finish import Finisher, collect
from xaigan.experiments.grid import EvalSettings, Grid
from xaigan.experiments.plan import RunPlan, plan_runs
from xaigan.experiments.record import check_record_meta, write_record_meta
from xaigan.io import atomic_write_bytes, atomic_write_text, remove_stale_temps


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    budget: str = "quick",
    seeds: list[int],
    cells: list[str] | None = None,
    evaluate: bool = True,
    record: str | Path | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train, evaluate and record every run of ``grid`` into ``out``; a run done already is skipped.

    Args:
        grid: the grid (:func:`load_grid`).
        out: the grid's output folder (one folder per cell, one per seed inside it).
        budget: the name of one of the grid's budgets.
        seeds: the seeds to run every cell with.
        cells: run only these cells (the grid file is still copied whole).
        evaluate: score each trained run (FID, KID, ...).
        record: a folder of finished runs' small artefacts: runs there are skipped, runs finished here added.
        executor: what trains the runs (:func:`make_executor`); None: one at a time in this process.
        progress: show progress bars.

    Returns:
        One record per run (:func:`collect`), in the grid's order, for :func:`aggregate`.

    Raises:
        RunsFailedError: runs that failed on every try (Ray); the other runs are finished.
    """
    out, executor = Path(out), executor or SerialExecutor()
    plan, meta = _plan(grid, out, budget, seeds, cells, record if evaluate else None, executor.name)
    todo = plan.to_train()
    finish = Finisher(EvalSettings.from_grid(grid) if evaluate else None, record)
    for spec in plan.here:  # trained before an interruption: scored and recorded before other runs train
        finish(spec)
    failed = executor.run(todo, finish, grid=grid.name, progress=progress) if todo else []
    return _finished_records(plan, finish, failed, out, meta)


def _plan(
    grid: Grid,
    out: Path,
    budget: str,
    seeds: list[int],
    cells: list[str] | None,
    record: str | Path | None,
    executor: str,
) -> tuple[RunPlan, dict[str, Any]]:
    """Plan the runs (those in ``record`` skipped), after claiming ``record`` for this grid (refused if it holds
    another), and write what a report needs from ``out`` alone: the grid file and ``grid.json``, returned."""
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)  # run folders clean their own when claimed
    if record is not None:
        check_record_meta(record, grid, budget)  # another grid's record: refused before anything is planned
    plan = plan_runs(grid, out, budget=budget, seeds=seeds, cells=cells, record=record)  # may refuse: nothing written
    if record is not None:
        write_record_meta(record, grid, budget, seeds)
    if grid.path is not None and grid.path.resolve() != (out / "grid.yaml").resolve():
        atomic_write_bytes(out / "grid.yaml", grid.path.read_bytes())
    meta = {"grid": str(grid.path), "name": grid.name, "budget": budget, "seeds": seeds, "executor": executor}
    atomic_write_text(out / "grid.json", json.dumps(meta, indent=2))
    return plan, meta


def _finished_records(
    plan: RunPlan, finish: Finisher, failed: list[dict[str, Any]], out: Path, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """Finish every run of ``plan`` but the ``failed`` ones (those finished already are left as they are) and collect
    them, the recorded ones from the record.

    Args:
        plan: the grid's runs.
        finish: what finishes a run.
        failed: the runs that failed on every try (an executor's return).
        out: the grid's output folder.
        meta: ``grid.json``'s content, which then lists the failed runs.

    Returns:
        One record per run (:func:`collect`), in the grid's order.

    Raises:
        RunsFailedError: ``failed`` is not empty.
    """
    lost = {(f["cell"], f["seed"]) for f in failed}
    left = [spec for spec in plan.runs if (spec.cell, spec.seed) not in lost]
    for spec in left:
        if (spec.cell, spec.seed) not in plan.recorded:
            finish(spec)
    records = [collect(spec) for spec in left]
    if failed:
        atomic_write_text(out / "grid.json", json.dumps({**meta, "failed": failed}, indent=2))
        raise RunsFailedError(failed)
    return records


class RunsFailedError(RunError):
    """Runs that failed on every try (listed in ``grid.json``); every other run of the grid finished."""

    def __init__(self, failed: list[dict[str, Any]]) -> None:
        self.failed = failed
        names = ", ".join(f"{f['cell']} seed {f['seed']} ({f['error']})" for f in failed)
        super().__init__(
            f"{len(failed)} run(s) failed: {names}; the others are finished and reported. Run the same command "
            "again to retry the failed ones from their last checkpoint"
        )
