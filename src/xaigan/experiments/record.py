"""A grid's record: the small artefacts of every finished run, kept apart from the run folders so that they can be
committed, and a study of many hours can go on later or on another machine.

``RECORD/CELL/seed_N/`` holds the run's config, data description, summary, evaluation, a thinned ``metrics.jsonl``
(every evaluation and epoch record, at most ~``KEEP_STEPS`` step records), its last sample grid and three explanation
grids: exactly what :func:`xaigan.report.build_report` reads, so ``xaigan report RECORD`` rebuilds the report from
the record alone. ``reproduce --record RECORD`` skips every run recorded there (same settings) and records each run
it finishes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from xaigan import models
from xaigan.config import Config, ConfigError
from xaigan.experiments.grid import Grid, RunSpec
from xaigan.io import atomic_write_bytes, atomic_write_text
from xaigan.rundir import RunDir
from xaigan.train import pick_adam, resolve_runtime

KEEP_STEPS = 200
# Keys that may differ between a stored run and the grid's spec of it without changing what was trained.
_COSMETIC = {"progress", "name", "tensorboard"}
_RESOLVED = ("d_output", "explain_mode")  # stored as the trainer resolved them against D
_MACHINE = ("precision", "compile", "adam")  # "auto": what the machine that trained the run chose


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}


def check_same_config(spec: RunSpec, folder: str | Path | None = None) -> None:
    """Refuse a run folder (default: the spec's) trained with other settings than ``spec`` asks for."""
    run = RunDir(folder if folder is not None else spec.run_dir)
    if not run.config_path.is_file():
        return
    stored = {**_DEFAULTS, **run.read_config()}  # a setting added since the run was trained had its default then
    wanted = _resolved_like_training(spec.cfg, run)
    stored["adam"] = pick_adam(stored["adam"], stored["precision"])  # a run from before the key: as it trained
    for key in _MACHINE:  # the machine that trained it chose; a resumed run keeps that choice
        if wanted.get(key) == "auto":
            wanted[key] = stored.get(key)
    diff = sorted(k for k in wanted if k not in _COSMETIC and stored.get(k) != wanted[k])
    if diff:
        raise ConfigError(
            f"{run.path} was trained with other settings ({', '.join(diff)}); use another folder for this budget"
        )


def _resolved_like_training(cfg: Config, run: RunDir) -> dict[str, Any]:
    """``cfg`` with ``d_output`` and ``explain_mode`` resolved against D as the trainer stores them ("auto" and, for a
    BatchNorm D, "step" name what D decides), D built on the meta device from the run's recorded image shape; left
    out (not compared) when the run has no data description to build D from."""
    wanted = cfg.to_dict()
    shape = run.read_data_meta().get("image_shape") if run.data_path.is_file() else None
    if not shape:
        return {k: v for k, v in wanted.items() if k not in _RESOLVED or v not in ("auto", "step")}
    with torch.device("meta"):
        _, D = models.build(cfg.model, int(shape[0]), int(shape[-1]), cfg.noise_dim, cfg.spectral_norm)
    runtime = resolve_runtime(cfg, D)  # no device: precision stays as asked (see check_same_config)
    return {**wanted, "d_output": runtime.d_output, "explain_mode": runtime.explain_mode, "adam": runtime.adam}


def recorded_path(record: str | Path, spec: RunSpec) -> Path:
    return Path(record) / spec.cell / f"seed_{spec.seed}"


def is_recorded(record: str | Path, spec: RunSpec) -> bool:
    """Whether ``record`` holds this run, trained and evaluated with the same settings (other settings: an error)."""
    folder = recorded_path(record, spec)
    if RunDir(folder).state() != "done":
        return False
    check_same_config(spec, folder)
    return True


def _thin_metrics(lines: list[str]) -> str:
    records = [json.loads(line) for line in lines if line.strip()]
    steps = [r for r in records if "d_loss" in r and r.get("event") is None]
    every = max(1, math.ceil(len(steps) / KEEP_STEPS))
    kept, seen = [], 0
    for r in records:
        if "d_loss" in r and r.get("event") is None:
            seen += 1
            if (seen - 1) % every and seen != len(steps):
                continue
        kept.append(json.dumps(r))
    return "\n".join(kept) + ("\n" if kept else "")


def evenly_spaced(paths: list[Path], k: int = 3) -> list[Path]:
    """``k`` of ``paths`` spread evenly from the first to the last (all of them when there are at most ``k``): the
    explanation grids a report shows and a record keeps."""
    if len(paths) <= k:
        return paths
    return [paths[round(i * (len(paths) - 1) / (k - 1))] for i in range(k)]


def record_run(run: RunDir, dest: str | Path) -> None:
    """Copy a finished, evaluated run's small artefacts into ``dest`` (atomically, file by file; the summary and
    evaluation last, so that an interrupted copy never reads as a recorded run)."""
    if run.state() != "done":
        raise ValueError(f"{run.path} is not trained and evaluated yet; nothing to record")
    out = RunDir(dest)
    for src in (run.config_path, run.data_path):
        if src.is_file():
            atomic_write_bytes(out.path / src.name, src.read_bytes())
    if run.metrics_path.is_file():
        atomic_write_text(out.metrics_path, _thin_metrics(run.metrics_path.read_text().splitlines()))
    samples = run.sample_paths()[-1:]
    explanations = evenly_spaced(run.explanation_paths())
    for folder, files in ((out.samples_dir, samples), (out.explanations_dir, explanations)):
        for src in files:
            atomic_write_bytes(folder / src.name, src.read_bytes())
    atomic_write_bytes(out.summary_path, run.summary_path.read_bytes())
    atomic_write_bytes(out.eval_path, run.eval_path.read_bytes())


def check_record_meta(record: str | Path, grid: Grid, budget: str) -> list[int]:
    """The seeds ``record`` holds for ``grid`` at ``budget`` (none for a new record); a record of another grid or
    budget is refused (:class:`ConfigError`). Writes nothing."""
    meta_path = Path(record) / "grid.json"
    if not meta_path.is_file():
        return []
    old: dict[str, Any] = json.loads(meta_path.read_text())
    if old.get("name") != grid.name or old.get("budget") != budget:
        raise ConfigError(
            f"{record} records grid {old.get('name')!r} budget {old.get('budget')!r}, not {grid.name!r} "
            f"budget {budget!r}; use another --record folder"
        )
    return list(old.get("seeds", []))


def write_record_meta(record: str | Path, grid: Grid, budget: str, seeds: list[int]) -> None:
    """The grid file and ``grid.json`` (seeds: every seed recorded so far and these), after
    :func:`check_record_meta`."""
    record = Path(record)
    meta_path = record / "grid.json"
    known = check_record_meta(record, grid, budget)
    if grid.path is not None:
        atomic_write_bytes(record / "grid.yaml", grid.path.read_bytes())
    meta = {"grid": str(grid.path), "name": grid.name, "budget": budget, "seeds": sorted(set(known) | set(seeds))}
    atomic_write_text(meta_path, json.dumps(meta, indent=2))
