"""Aggregate a grid's runs per cell: mean, std and 95% CI over seeds, change vs baseline, paired test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from xaigan.experiments.grid import Grid


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample std (ddof=1) and the half-width of the Student-t confidence interval (nan for n < 2)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    if arr.size < 2:
        return float(arr.mean()), math.nan, math.nan
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, arr.size - 1) * std / math.sqrt(arr.size))
    return float(arr.mean()), std, half


def paired_test(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired t-test of ``a`` vs ``b`` over the seeds both have (two-sided), and how many seeds ``a`` is lower."""
    seeds = sorted(set(a) & set(b))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    out: dict[str, Any] = {"n_pairs": len(seeds), "lower_in": int((diffs < 0).sum()), "mean_diff": math.nan}
    if len(seeds):
        out["mean_diff"] = float(diffs.mean())
    if len(seeds) >= 2 and np.any(diffs != diffs[0]):
        result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        out.update(t=float(result.statistic), p=float(result.pvalue))
    else:
        out.update(t=math.nan, p=math.nan)
    return out


def aggregate(grid: Grid, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell, in the grid's order. Refuses runs scored with different feature extractors."""
    from xaigan.metrics import check_same_extractor

    scored = [r for r in records if r["eval"]]
    for record in scored[1:]:
        check_same_extractor(scored[0]["eval"]["extractor"], record["eval"]["extractor"])
    by_cell: dict[str, list[dict[str, Any]]] = {cell: [] for cell in grid.cells}
    for record in records:
        if record["eval"]:
            by_cell.setdefault(record["cell"], []).append(record)
    fid_by_seed = {c: {r["seed"]: r["eval"]["fid"] for r in rs} for c, rs in by_cell.items()}
    step_time = {
        c: float(np.mean([r["summary"]["sec_per_step"] for r in rs])) if rs else math.nan for c, rs in by_cell.items()
    }
    rows = []
    for cell, runs in by_cell.items():
        fid_mean, fid_std, fid_ci = mean_ci([r["eval"]["fid"] for r in runs])
        kid_mean, kid_std, kid_ci = mean_ci([r["eval"]["kid_mean"] for r in runs])
        row: dict[str, Any] = {
            "cell": cell,
            "xai": {**grid.base, **grid.cells[cell]}.get("xai", "none"),
            "diffaugment": {**grid.base, **grid.cells[cell]}.get("diffaugment", ""),
            "fraction": {**grid.base, **grid.cells[cell]}.get("fraction", 1.0),
            "n_seeds": len(runs),
            "seeds": sorted(r["seed"] for r in runs),
            "fid_mean": fid_mean,
            "fid_std": fid_std,
            "fid_ci95": fid_ci,
            "kid_mean": kid_mean,
            "kid_std": kid_std,
            "kid_ci95": kid_ci,
            "precision": float(np.mean([r["eval"]["precision"] for r in runs])) if runs else math.nan,
            "recall": float(np.mean([r["eval"]["recall"] for r in runs])) if runs else math.nan,
            "wall_s": float(np.mean([r["summary"]["train_seconds"] for r in runs])) if runs else math.nan,
            "sec_per_step": step_time[cell],
            "extractor": runs[0]["eval"]["extractor"]["id"] if runs else None,
            "baseline": grid.baseline(cell),
        }
        base = row["baseline"]
        if base is not None and by_cell.get(base):
            base_fid = float(np.mean(list(fid_by_seed[base].values())))
            row["fid_change_pct"] = 100.0 * (fid_mean - base_fid) / base_fid
            row["step_time_ratio"] = step_time[cell] / step_time[base]
            row["paired"] = paired_test(fid_by_seed[cell], fid_by_seed[base])
        if cell in grid.original:
            row["original"] = grid.original[cell]
        rows.append(row)
    return rows
