"""Run a grid: train every (cell, seed), evaluate each run, skip finished runs and resume unfinished ones."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xaigan.experiments.grid import Grid, RunSpec

log = logging.getLogger(__name__)


def run_state(spec: RunSpec) -> str:
    """``done`` (evaluated), ``trained`` (needs evaluation), ``partial`` (resume) or ``new``."""
    d = spec.run_dir
    if (d / "eval.json").is_file() and (d / "summary.json").is_file():
        return "done"
    if (d / "summary.json").is_file():
        return "trained"
    if (d / "checkpoints" / "last.pt").is_file():
        return "partial"
    return "new"


def _check_same_config(spec: RunSpec) -> None:
    """Refuse to resume a folder trained with other settings (e.g. another budget) into this grid."""
    from xaigan.config import ConfigError, load_yaml

    path = spec.run_dir / "config.yaml"
    if not path.is_file():
        return
    stored = load_yaml(path)
    ignore = {"progress", "name", "tensorboard"}
    diff = sorted(k for k in spec.cfg if k not in ignore and stored.get(k) != spec.cfg[k])
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
) -> list[dict[str, Any]]:
    """Train and evaluate every run of ``grid`` into ``out``; return one record per run."""
    from xaigan.cli import attach_evaluation, build_trainer
    from xaigan.evaluate import Evaluator, evaluate_run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = grid.runs(out, budget, seeds)
    if grid.path is not None and grid.path.resolve() != (out / "grid.yaml").resolve():
        shutil.copyfile(grid.path, out / "grid.yaml")  # the report needs the grid, from the folder alone
    (out / "grid.json").write_text(
        json.dumps({"grid": str(grid.path), "name": grid.name, "budget": budget, "seeds": seeds}, indent=2)
    )
    evaluators: dict[tuple, Evaluator] = {}
    records = []
    bar = tqdm(specs, desc=grid.name, disable=not progress, unit="run")
    for spec in bar:
        state = run_state(spec)
        bar.set_postfix_str(f"{spec.cell} seed {spec.seed} ({state})")
        _check_same_config(spec)
        spec.cfg["progress"] = progress
        if state in ("new", "partial"):
            trainer = build_trainer(spec.cfg, spec.run_dir, resume=state == "partial")
            attach_evaluation(trainer)
            summary = trainer.fit()
            if summary.get("interrupted"):
                raise KeyboardInterrupt
        if evaluate and state != "done":
            ev = grid.evaluation
            key = (spec.cfg["dataset"], spec.cfg["data_dir"], ev.get("reference", "all"), ev.get("features", "domain"))
            if key not in evaluators:
                evaluators[key] = Evaluator(key[0], data_dir=key[1], reference=key[2], features=key[3])
            evaluate_run(spec.run_dir, n=ev.get("n", 10000), evaluator=evaluators[key])
        records.append(collect(spec))
    return records


def collect(spec: RunSpec) -> dict[str, Any]:
    """What aggregation needs from one finished run folder."""
    d = spec.run_dir
    summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
    result = json.loads((d / "eval.json").read_text()) if (d / "eval.json").is_file() else {}
    return {"cell": spec.cell, "seed": spec.seed, "run_dir": str(d), "summary": summary, "eval": result}
