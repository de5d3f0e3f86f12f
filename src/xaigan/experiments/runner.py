"""Run a grid: train every (cell, seed), evaluate each run, skip finished runs and resume unfinished ones."""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xaigan import train
from xaigan.errors import RunError
from xaigan.evaluate import Evaluator, evaluate_run
from xaigan.experiments.grid import Grid, RunSpec
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.record import check_same_config, is_recorded, record_run, recorded_path, write_record_meta
from xaigan.experiments.workers import auto_workers, train_parallel
from xaigan.io import atomic_write_bytes, atomic_write_text, remove_stale_temps
from xaigan.rundir import RunDir

log = logging.getLogger(__name__)


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    budget: str = "quick",
    seeds: list[int],
    evaluate: bool = True,
    progress: bool = True,
    workers: int | str = 1,
    record: str | Path | None = None,
    executor: str = "local",
    ray_options: dict[str, Any] | None = None,
    cells: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every run of ``grid`` into ``out``; return one record per run. With ``workers`` > 1 the
    runs are trained that many at a time in separate processes (see :mod:`xaigan.experiments.workers`), then
    evaluated here; ``"auto"``: :func:`xaigan.experiments.workers.auto_workers`. ``record``: a folder of finished
    runs' small artefacts (:mod:`xaigan.experiments.record`): runs recorded there are skipped, and each run finished
    and evaluated here is recorded there. ``executor="ray"`` trains the runs as Ray tasks instead
    (:func:`xaigan.experiments.cluster.train_on_ray`, given ``ray_options``); runs that fail there are written to
    ``grid.json`` and raised as :class:`RunsFailedError` after every other run is finished, evaluated and recorded.
    Finished runs are skipped and unfinished ones resumed, so the same call continues an interrupted grid.

    Args:
        grid: the grid (:func:`load_grid`).
        out: the grid's output folder (one folder per cell, one per seed inside it).
        budget: the name of one of the grid's budgets.
        seeds: the seeds to run every cell with.
        evaluate: score each trained run (FID, KID, ...).
        progress: show progress bars.
        workers: runs trained at once in separate processes, or ``"auto"``.
        record: a folder of finished runs' small artefacts, or None.
        executor: ``"local"``, or ``"ray"``.
        ray_options: options of the Ray executor.
        cells: run only these cells (the grid file is still copied whole).

    Returns:
        One record per run (:func:`collect`), in the grid's order, for :func:`aggregate`.

    Raises:
        xaigan.train.StopRequested: a run was stopped by a signal (it is checkpointed).
        RunsFailedError: runs that failed on every try (Ray).

    Example:
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> records = run_grid(grid, "runs/fmnist35-powered", budget="paper", seeds=[0, 1], workers="auto")
        >>> rows = aggregate(grid, records)
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)  # run folders clean their own when claimed
    specs = grid.runs(out, budget, seeds, cells)
    done_before: dict[tuple[str, int], RunSpec] = {}
    if record is not None and evaluate:
        write_record_meta(record, grid, budget, seeds)
        for spec in specs:
            if is_recorded(record, spec):
                done_before[spec.cell, spec.seed] = replace(spec, run_dir=recorded_path(record, spec))
        if done_before:
            log.info("%d of %d runs already recorded in %s", len(done_before), len(specs), record)
        specs = [s for s in specs if (s.cell, s.seed) not in done_before]
    if grid.path is not None and grid.path.resolve() != (out / "grid.yaml").resolve():
        atomic_write_bytes(
            out / "grid.yaml", grid.path.read_bytes()
        )  # the report needs the grid, from the folder alone
    meta = {"grid": str(grid.path), "name": grid.name, "budget": budget, "seeds": seeds, "executor": executor}
    atomic_write_text(out / "grid.json", json.dumps(meta, indent=2))
    todo = []
    for spec in specs:
        check_same_config(spec)
        state = RunDir(spec.run_dir).state()
        if state in ("new", "started", "partial"):
            todo.append((spec, state))
    if workers == "auto":
        workers = auto_workers([spec.cfg for spec, _ in todo])
    evaluators: dict[tuple, Evaluator] = {}
    finished: set[tuple[str, int]] = set()

    def finish(spec: RunSpec) -> None:
        """Evaluate a trained run and record it, once: the early pass, a worker's report and the final pass all call
        this."""
        if (spec.cell, spec.seed) in finished:
            return
        run = RunDir(spec.run_dir)
        if evaluate and run.state() == "trained":
            ev = grid.evaluation
            key = (spec.cfg.dataset, spec.cfg.data_dir, ev.get("reference", "all"), ev.get("features", "domain"))
            if key not in evaluators:
                evaluators[key] = Evaluator(key[0], data_dir=key[1], reference=key[2], features=key[3])
            evaluate_run(run, n=ev.get("n", 10000), evaluator=evaluators[key])
        if run.state() == "done":
            if record is not None:
                record_run(run, recorded_path(record, spec))
            finished.add((spec.cell, spec.seed))

    # Runs trained before an interruption but not yet evaluated are scored and recorded now, not after hours of
    # other runs' training (which may be interrupted again).
    for spec in specs:
        if RunDir(spec.run_dir).state() in ("trained", "done"):
            finish(spec)
    say = tqdm.write if progress else log.info
    failed: list[dict[str, Any]] = []
    if executor == "ray" and todo:
        from xaigan.experiments.cluster import train_on_ray

        with tqdm(total=len(todo), desc=f"{grid.name} (Ray)", disable=not progress, unit="run") as ray_bar:
            failed = train_on_ray(
                todo, **(ray_options or {}), report=say, on_done=finish, progress=lambda i, n: ray_bar.update(1)
            )
    elif workers > 1 and len(todo) > 1:  # each run evaluated and recorded here as soon as its worker finishes it
        train_parallel(todo, workers, report=say, on_done=finish, name=grid.name, progress=progress)
    lost = {(f["cell"], f["seed"]) for f in failed}
    records = []
    left = [s for s in specs if (s.cell, s.seed) not in lost]
    serial = any(RunDir(s.run_dir).state() in ("new", "started", "partial") for s in left)  # else nothing to show
    bar = tqdm(left, desc=grid.name, disable=not (progress and serial), unit="run")
    for spec in bar:
        run = RunDir(spec.run_dir)
        state = run.state()
        bar.set_postfix_str(f"{spec.cell} seed {spec.seed} ({state})")
        if state in ("new", "started", "partial"):
            # "started": killed before its first checkpoint, nothing to resume: train it from the start again.
            trainer = prepare_run(spec.cfg, run, resume=state == "partial", overwrite=state == "started")
            trainer.cfg.progress = progress
            summary = trainer.fit()
            if summary.get("interrupted"):
                raise train.StopRequested(f"stopped in {run.path} at step {summary['step']}", summary.get("signal"))
        finish(spec)
        records.append(collect(spec))
    order = {(s.cell, s.seed): i for i, s in enumerate(grid.runs(out, budget, seeds))}
    records += [collect(spec) for spec in done_before.values()]
    if failed:
        atomic_write_text(out / "grid.json", json.dumps({**meta, "failed": failed}, indent=2))
        raise RunsFailedError(failed)
    return sorted(records, key=lambda r: order[r["cell"], r["seed"]])


class RunsFailedError(RunError):
    """Runs that failed on every try (listed in ``grid.json``); every other run of the grid finished."""

    def __init__(self, failed: list[dict[str, Any]]) -> None:
        self.failed = failed
        names = ", ".join(f"{f['cell']} seed {f['seed']} ({f['error']})" for f in failed)
        super().__init__(
            f"{len(failed)} run(s) failed: {names}; the others are finished and reported. Run the same command "
            "again to retry the failed ones from their last checkpoint"
        )


LATE_EVALS = 3  # in-training evaluations averaged into a run's late FID


def collect(spec: RunSpec) -> dict[str, Any]:
    """What aggregation needs from one finished run folder (``step_median``: the median of the logged per-step
    times, robust to a stall or a competing job, unlike the summary's mean; ``step_times``: each logged step's
    ``(epoch, seconds, guided)``, guided when it logged xAI stats, so that a cell whose guidance starts mid-run is
    timed per phase; ``late_fid``: the mean of the last :data:`LATE_EVALS` in-training FIDs, or of as many as there
    are, None without any; ``late_extractor``: the weights hash they were scored with, None where older runs did not
    log it, ``"mixed"`` where they were scored with several; ``late_from``: the fraction of the run's steps done at
    the first of them, None where the run did not log steps).

    Args:
        spec: a run of the grid, trained and evaluated.

    Returns:
        ``cell``, ``seed``, ``run_dir``, ``summary``, ``eval`` and the timing and late-FID keys above.

    Example:
        >>> from pathlib import Path
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> records = [collect(spec) for spec in grid.runs(Path("results/fmnist35-powered"), "paper", [0])]
    """
    run = RunDir(spec.run_dir)
    metrics = run.read_metrics()
    steps = [m for m in metrics if isinstance(m.get("sec_per_step"), (int, float))]
    times = [m["sec_per_step"] for m in steps]
    late = [m for m in metrics if isinstance(m.get("fid"), (int, float))][-LATE_EVALS:]
    scored_by = {m.get("extractor") for m in late}
    summary = run.read_summary()
    total = summary.get("steps")
    late_from = float(late[0]["step"]) / total if late and isinstance(late[0].get("step"), int) and total else None
    return {
        "cell": spec.cell,
        "seed": spec.seed,
        "run_dir": str(run.path),
        "summary": summary,
        "eval": run.read_eval(),
        "step_median": float(statistics.median(times)) if times else None,
        "step_times": [(int(m.get("epoch", 0)), float(m["sec_per_step"]), "xai_explained" in m) for m in steps],
        "late_fid": float(statistics.fmean(float(m["fid"]) for m in late)) if late else None,
        "late_extractor": (scored_by.pop() if len(scored_by) == 1 else "mixed") if late else None,
        "late_from": late_from,
    }
