"""Run a grid: train every (cell, seed), evaluate each run, skip finished runs and resume unfinished ones."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xaigan import train
from xaigan.config import ConfigError
from xaigan.evaluate import Evaluator, evaluate_run
from xaigan.experiments.grid import Grid, RunSpec
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.workers import auto_workers, train_parallel
from xaigan.io import atomic_write_bytes, atomic_write_text, remove_stale_temps
from xaigan.rundir import RunDir

log = logging.getLogger(__name__)

# Keys that may differ between a stored run and the grid's spec of it without changing what was trained.
_COSMETIC = {"progress", "name", "tensorboard"}


def _check_same_config(spec: RunSpec) -> None:
    """Refuse to resume a folder trained with other settings (e.g. another budget) into this grid."""
    run = RunDir(spec.run_dir)
    if not run.config_path.is_file():
        return
    stored = run.read_config()
    wanted = spec.cfg.to_dict()
    for key in ("d_output", "explain_mode"):  # stored resolved: what "auto" detects from D is not a difference
        if wanted[key] == "auto":
            del wanted[key]
    diff = sorted(k for k in wanted if k not in _COSMETIC and stored.get(k) != wanted[k])
    if diff:
        raise ConfigError(
            f"{spec.run_dir} was trained with other settings ({', '.join(diff)}); use another --out for this budget"
        )


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    budget: str = "quick",
    seeds: list[int],
    evaluate: bool = True,
    progress: bool = True,
    workers: int | str = 1,
) -> list[dict[str, Any]]:
    """Train and evaluate every run of ``grid`` into ``out``; return one record per run. With ``workers`` > 1 the
    runs are trained that many at a time in separate processes (see :mod:`xaigan.experiments.workers`), then
    evaluated here; ``"auto"``: :func:`xaigan.experiments.workers.auto_workers`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)  # run folders clean their own when claimed
    specs = grid.runs(out, budget, seeds)
    if grid.path is not None and grid.path.resolve() != (out / "grid.yaml").resolve():
        atomic_write_bytes(
            out / "grid.yaml", grid.path.read_bytes()
        )  # the report needs the grid, from the folder alone
    atomic_write_text(
        out / "grid.json",
        json.dumps({"grid": str(grid.path), "name": grid.name, "budget": budget, "seeds": seeds}, indent=2),
    )
    todo = []
    for spec in specs:
        _check_same_config(spec)
        state = RunDir(spec.run_dir).state()
        if state in ("new", "started", "partial"):
            todo.append((spec, state))
    if workers == "auto":
        workers = auto_workers([spec.cfg for spec, _ in todo])
    if workers > 1 and len(todo) > 1:
        train_parallel(todo, workers, report=tqdm.write if progress else log.info)
    evaluators: dict[tuple, Evaluator] = {}
    records = []
    bar = tqdm(specs, desc=grid.name, disable=not progress, unit="run")
    for spec in bar:
        run = RunDir(spec.run_dir)
        state = run.state()
        bar.set_postfix_str(f"{spec.cell} seed {spec.seed} ({state})")
        _check_same_config(spec)
        if state in ("new", "started", "partial"):
            # "started": killed before its first checkpoint, nothing to resume: train it from the start again.
            trainer = prepare_run(spec.cfg, run, resume=state == "partial", overwrite=state == "started")
            trainer.cfg.progress = progress
            summary = trainer.fit()
            if summary.get("interrupted"):
                raise train.StopRequested(f"stopped in {run.path} at step {summary['step']}", summary.get("signal"))
        if evaluate and state != "done":
            ev = grid.evaluation
            key = (spec.cfg.dataset, spec.cfg.data_dir, ev.get("reference", "all"), ev.get("features", "domain"))
            if key not in evaluators:
                evaluators[key] = Evaluator(key[0], data_dir=key[1], reference=key[2], features=key[3])
            evaluate_run(run, n=ev.get("n", 10000), evaluator=evaluators[key])
        records.append(collect(spec))
    return records


def collect(spec: RunSpec) -> dict[str, Any]:
    """What aggregation needs from one finished run folder."""
    run = RunDir(spec.run_dir)
    return {
        "cell": spec.cell,
        "seed": spec.seed,
        "run_dir": str(run.path),
        "summary": run.read_summary(),
        "eval": run.read_eval(),
    }
