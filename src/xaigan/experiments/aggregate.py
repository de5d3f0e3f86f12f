"""Aggregate a grid's runs per cell: mean, std and 95% CI over seeds, change vs baseline, paired tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xaigan.errors import InputError
from xaigan.experiments.grid import Grid
from xaigan.experiments.statistics import equivalence_test, holm, mean_ci, paired_test


def check_comparable(grid: Grid, records: list[dict[str, Any]]) -> None:
    """Runs on the same dataset are compared with each other, so they must have been scored against the same
    reference set (content hash, split, size), with as many generated samples, by one kind of feature extractor
    (its id: architecture and version). Its weights may differ, as when a retrained extractor scored the later seeds
    of a grid: :func:`aggregate` then pairs each seed only within one set of weights. Runs on different datasets are
    never compared and may use different (e.g. per-dataset domain) extractors."""
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["eval"]:
            by_dataset.setdefault(str({**grid.base, **grid.cells[r["cell"]]}.get("dataset")), []).append(r)
    for runs in by_dataset.values():
        first = runs[0]
        for other in runs[1:]:
            where = f"{other['run_dir']} vs {first['run_dir']}"
            a_ext, b_ext = first["eval"]["extractor"], other["eval"]["extractor"]
            if None in (a_ext.get("id"), b_ext.get("id"), a_ext.get("weights_hash"), b_ext.get("weights_hash")):
                raise InputError(f"{where}: eval.json does not record its extractor's id and weights_hash")
            if a_ext["id"] != b_ext["id"]:
                raise InputError(
                    f"{where}: scored by different feature extractors ({b_ext['id']} vs {a_ext['id']}), whose "
                    "scores are not comparable; re-run `xaigan evaluate` on one of them"
                )
            a, b = first["eval"].get("reference"), other["eval"].get("reference")
            if a is None or b is None:
                raise InputError(f"{where}: eval.json does not record its reference set; re-run `xaigan evaluate`")
            for key in ("content_sha256", "split", "n"):
                if a.get(key) != b.get(key):
                    raise InputError(
                        f"{where}: scored against different reference sets ({key} {b.get(key)} vs {a.get(key)}); "
                        "re-run `xaigan evaluate` with the same --reference"
                    )
            if first["eval"].get("n") != other["eval"].get("n"):
                raise InputError(
                    f"{where}: scored on {other['eval'].get('n')} vs {first['eval'].get('n')} generated samples "
                    "(FID's bias depends on n); re-run `xaigan evaluate` with the same --n"
                )


def weights(record: dict[str, Any]) -> str:
    """The weights hash of the extractor that scored a run's final evaluation."""
    return str(record["eval"]["extractor"]["weights_hash"])


def pair_key(record: dict[str, Any]) -> tuple[str, int]:
    """What pairs two cells' runs: the same seed, scored by the same extractor weights."""
    return weights(record), int(record["seed"])


def late_key(record: dict[str, Any]) -> tuple[str, int]:
    """As :func:`pair_key` for the in-training FIDs (runs that did not log their extractor: their final one's)."""
    return str(record.get("late_extractor") or weights(record)), int(record["seed"])


def _mean_of(runs: list[dict[str, Any]], key: str) -> float:
    """Mean of an evaluation number over the runs that have it (older evaluations lack density, coverage and
    classifier confidence)."""
    values = [r["eval"][key] for r in runs if isinstance(r["eval"].get(key), (int, float))]
    return float(np.mean(values)) if values else math.nan


def regimes(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A cell's guided steps by regime (``xai_regimes`` of its runs' summaries, summed), with the mean over runs of
    the partly explained steps' mean masks of explained and other samples; None for a cell without guidance."""
    found = [r["summary"]["xai_regimes"] for r in runs if r["summary"].get("xai_regimes")]
    if not found:
        return None
    out: dict[str, Any] = {k: int(sum(f[k] for f in found)) for k in ("none", "partial", "all")}
    for key in ("partial_mask_mean_explained", "partial_mask_mean_others"):
        values = [f[key] for f in found if key in f]
        out[key] = float(np.mean(values)) if values else math.nan
    return out


CONTAMINATED = 1.5  # a run phase whose mean step time exceeds its median by this factor shared the machine


def _step_median(record: dict[str, Any]) -> float:
    value = record.get("step_median")
    return float(value) if value else float(record["summary"]["sec_per_step"])


def _phases(record: dict[str, Any]) -> dict[str, list[float]]:
    """A run's logged step times split into its plain steps and its guided ones (those that logged xAI stats)."""
    times = record.get("step_times") or []
    return {"plain": [s for _, s, g in times if not g], "guided": [s for _, s, g in times if g]}


def step_cost(record: dict[str, Any]) -> dict[str, Any]:
    """A run's step times, robust to stalls: the median of its logged plain steps and of its guided ones, and
    ``mean``, the phases' medians weighted by their steps: the run's cost per step. A run whose guidance starts
    mid-run has two modes, and the median of all its steps falls anywhere between them. Without logged times (older
    records), every number is the run's ``step_median``."""
    times = record.get("step_times") or []
    if not times:
        median = _step_median(record)
        return {"plain": median, "guided": None, "mean": median, "guided_epochs": set()}
    phases = _phases(record)
    medians = {k: float(np.median(v)) if v else None for k, v in phases.items()}
    mean = sum(len(v) * medians[k] for k, v in phases.items() if v) / len(times)
    return {**medians, "mean": mean, "guided_epochs": {e for e, _, g in times if g}}


def contaminated(record: dict[str, Any]) -> bool:
    """Whether a run's mean step time is more than :data:`CONTAMINATED` times its median, in either phase (plain or
    guided steps; for older records without logged times, the summary's mean against ``step_median``)."""
    if not record.get("step_times"):
        median = record.get("step_median")
        return bool(median) and record["summary"]["sec_per_step"] > CONTAMINATED * median
    return any(v and np.mean(v) > CONTAMINATED * np.median(v) for v in _phases(record).values())


def paired_step_ratio(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    """Per seed, cell / baseline (same seed), each the median over seeds: ``ratio`` compares the runs' costs per step
    (:func:`step_cost`), with its range; ``guided`` the cell's guided steps with the baseline's steps in the same
    epochs (what an explained step costs; None without guided steps). Also the runs flagged as contaminated."""
    base_by_seed = {r["seed"]: r for r in base}
    ratios, guided = [], []
    for r in runs:
        if r["seed"] not in base_by_seed:
            continue
        b = base_by_seed[r["seed"]]
        cost, base_cost = step_cost(r), step_cost(b)
        ratios.append(cost["mean"] / base_cost["mean"])
        same_epochs = [s for e, s, _ in b.get("step_times") or [] if e in cost["guided_epochs"]]
        if cost["guided"] is not None and same_epochs:
            guided.append(cost["guided"] / float(np.median(same_epochs)))
    flagged = sorted(f"{r['cell']} seed {r['seed']}" for r in [*runs, *base] if contaminated(r))
    if not ratios:
        return {
            "ratio": math.nan,
            "min": math.nan,
            "max": math.nan,
            "guided": None,
            "n_pairs": 0,
            "contaminated": flagged,
        }
    return {
        "ratio": float(np.median(ratios)),
        "min": float(min(ratios)),
        "max": float(max(ratios)),
        "guided": float(np.median(guided)) if guided else None,
        "n_pairs": len(ratios),
        "contaminated": flagged,
    }


LATE_WINDOW_TOLERANCE = 0.1  # of a run's training: late windows further apart than this are not paired


def late_pairs(
    cell: dict[Any, tuple[float, float | None]], base: dict[Any, tuple[float, float | None]]
) -> tuple[dict[Any, float], dict[Any, float], dict[str, Any] | None]:
    """Split two cells' late FIDs (``key -> (late FID, fraction of training where its window begins)``) into the
    pairs whose windows agree, and a note on those left out. At equal steps on a fifth of the data, the last three
    evaluations (every 5 epochs) cover a run's last 10% against the full-data run's last 50%: no like-for-like check.
    An unknown start (older runs) pairs as before."""
    keep, apart = [], []
    for key in sorted(set(cell) & set(base)):
        a, b = cell[key][1], base[key][1]
        (apart if None not in (a, b) and abs(a - b) > LATE_WINDOW_TOLERANCE else keep).append(key)
    note = None
    if apart:
        starts = [(cell[k][1], base[k][1]) for k in apart]
        note = {"pairs": len(apart), "cell": float(np.median([a for a, _ in starts]))}
        note["baseline"] = float(np.median([b for _, b in starts]))
    return {k: cell[k][0] for k in keep}, {k: base[k][0] for k in keep}, note


def per_seed_pct(a: dict[Any, float], b: dict[Any, float]) -> list[dict[str, Any]]:
    """Each pair's difference ``a - b`` (:func:`pair_key`: same seed, same extractor weights) in percent of ``b``'s
    mean over the pairs, the unit of :func:`paired_test`'s ``diff_pct``, which is their mean."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return []
    base = float(np.mean([b[k] for k in keys]))
    return [{"seed": int(k[1]), "diff_pct": 100.0 * (a[k] - b[k]) / base} for k in keys]


def data_source(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What data a cell's runs trained on, from the first seed's ``summary.json`` (dataset, source, sizes, and the
    note of an offline subset); empty where runs did not record it."""
    first = min(runs, key=lambda r: r["seed"], default=None)
    data = (first or {}).get("summary", {}).get("data") or {}
    keys = ("dataset", "subset_of", "source", "location", "n_total", "n", "fraction", "subset", "note")
    return {k: data[k] for k in keys if data.get(k) is not None}


def run_provenance(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """By seed, where and with what each run trained and what scored it: ``provenance``, its ``summary.json``'s
    record (:mod:`xaigan.train.provenance`; None for runs trained before runs recorded it), ``device``, the kind of
    device the summary names ("cpu", "cuda"; older runs record this alone), and ``extractor``, the id and weights
    hash of the feature extractor that scored its final evaluation."""
    return {
        int(r["seed"]): {
            "provenance": r["summary"].get("provenance"),
            "device": r["summary"].get("device"),
            "extractor": {k: r["eval"]["extractor"].get(k) for k in ("id", "weights_hash")},
        }
        for r in sorted(runs, key=lambda r: r["seed"])
    }


def _in_order(runs: list[dict[str, Any]]) -> list[str]:
    """The extractor weights that scored these runs, in the order of their lowest seed."""
    return list(dict.fromkeys(weights(r) for r in sorted(runs, key=lambda r: r["seed"])))


def aggregate(grid: Grid, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell, in the grid's order. Refuses runs that cannot be compared (:func:`check_comparable`).

    Each row holds the cell's FID and KID over seeds (mean, std, 95% half-width), precision, recall, density,
    coverage, step times, each run's provenance (:func:`run_provenance`), and against its baseline (and its control,
    if it has one) the paired test of :func:`paired_test`, with Holm-adjusted p-values per family of comparisons.

    Args:
        grid: the grid the runs belong to.
        records: one record per run (:func:`collect`, as :func:`run_grid` returns them).

    Returns:
        The rows.

    Example:
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> records = run_grid(grid, "runs/fmnist35-powered", budget="paper", seeds=[0, 1])
        >>> rows = aggregate(grid, records)
        >>> [row["cell"] for row in rows]
        ['normal', 'saliency', 'saliency-selected']
    """
    check_comparable(grid, records)
    by_cell: dict[str, list[dict[str, Any]]] = {cell: [] for cell in grid.cells}
    for record in records:
        if record["eval"]:
            by_cell.setdefault(record["cell"], []).append(record)
    fid_by_seed = {c: {pair_key(r): r["eval"]["fid"] for r in rs} for c, rs in by_cell.items()}
    # G's own final FID beside its weight average's (runs with g_ema scored since 2026-12-07)
    own_by_seed = {
        c: {pair_key(r): r["eval"]["g_itself"]["fid"] for r in rs if "g_itself" in r["eval"]}
        for c, rs in by_cell.items()
    }
    late_by_seed = {
        c: {
            late_key(r): (r["late_fid"], r.get("late_from"))
            for r in rs
            if r.get("late_fid") is not None and r.get("late_extractor") != "mixed"
        }
        for c, rs in by_cell.items()
    }
    costs = {c: [step_cost(r) for r in rs] for c, rs in by_cell.items()}
    step_time = {c: float(np.median([k["mean"] for k in ks])) if ks else math.nan for c, ks in costs.items()}
    guided_time = {c: [k["guided"] for k in ks if k["guided"] is not None] for c, ks in costs.items()}
    rows = []
    for cell, runs in by_cell.items():
        fid_mean, fid_std, fid_ci = mean_ci([r["eval"]["fid"] for r in runs])
        kid_mean, kid_std, kid_ci = mean_ci([r["eval"]["kid_mean"] for r in runs])
        row: dict[str, Any] = {
            "cell": cell,
            "xai": {**grid.base, **grid.cells[cell]}.get("xai", "none"),
            "diffaugment": {**grid.base, **grid.cells[cell]}.get("diffaugment", ""),
            "fraction": {**grid.base, **grid.cells[cell]}.get("fraction", 1.0),
            "data": data_source(runs),
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
            "density": _mean_of(runs, "density"),
            "coverage": _mean_of(runs, "coverage"),
            "confident": _mean_of(runs, "confident"),
            "wall_s": float(np.mean([r["summary"]["train_seconds"] for r in runs])) if runs else math.nan,
            "sec_per_step": step_time[cell],
            "sec_per_guided_step": float(np.median(guided_time[cell])) if guided_time[cell] else None,
            "fid_g_itself_mean": mean_ci(list(own_by_seed[cell].values()))[0] if own_by_seed[cell] else math.nan,
            "late_fid_mean": mean_ci([v[0] for v in late_by_seed[cell].values()])[0]
            if late_by_seed[cell]
            else math.nan,
            "extractor": runs[0]["eval"]["extractor"]["id"] if runs else None,
            "seeds_by_weights": {w: sorted(r["seed"] for r in runs if weights(r) == w) for w in _in_order(runs)},
            "provenance": run_provenance(runs),
            "regimes": regimes(runs),
            "baseline": grid.baseline(cell),
        }
        base = row["baseline"]
        if base is not None and by_cell.get(base) and runs:
            base_fid = float(np.mean(list(fid_by_seed[base].values())))
            row["fid_change_pct"] = 100.0 * (fid_mean - base_fid) / base_fid
            row["step_time"] = paired_step_ratio(runs, by_cell[base])
            row["step_time_ratio"] = row["step_time"]["ratio"]
            row["paired"] = paired_test(fid_by_seed[cell], fid_by_seed[base])
            row["paired"]["per_seed_pct"] = per_seed_pct(fid_by_seed[cell], fid_by_seed[base])
            late_cell, late_base, apart = late_pairs(late_by_seed[cell], late_by_seed[base])
            if apart:
                row["late_windows"] = apart
            if late_cell:
                row["late"] = paired_test(late_cell, late_base)
            if own_by_seed[cell] and own_by_seed.get(base):
                row["g_itself"] = paired_test(own_by_seed[cell], own_by_seed[base])
        if cell in grid.original:
            row["original"] = grid.original[cell]
        rows.append(row)
    for r in rows:
        test = grid.equivalence.get(r["cell"])
        if test and by_cell[r["cell"]] and by_cell.get(test["against"]):
            other, margin = test["against"], float(test["margin_pct"])
            r["equivalence"] = {
                "against": other,
                **equivalence_test(fid_by_seed[r["cell"]], fid_by_seed[other], margin),
            }
            if own_by_seed[r["cell"]] and own_by_seed[other]:
                own = equivalence_test(own_by_seed[r["cell"]], own_by_seed[other], margin)
                r["equivalence_g_itself"] = {"against": other, **own}
        if r["cell"] in grid.controls and by_cell[r["cell"]]:
            of = grid.controls[r["cell"]]
            r["control"] = {"of": of, **paired_test(fid_by_seed[of], fid_by_seed[r["cell"]])}
            r["control"]["per_seed_pct"] = per_seed_pct(fid_by_seed[of], fid_by_seed[r["cell"]])
    # Holm families: each cell vs its baseline, vs its control, the late FIDs and G's own FIDs vs the baseline's
    for key in ("paired", "control", "late", "g_itself"):
        adjusted = holm({r["cell"]: r[key]["p"] for r in rows if key in r})
        for r in rows:
            if key in r:
                r[key]["p_holm"] = adjusted[r["cell"]]
    return rows
