import json
import math

import numpy as np
import pytest
import yaml
from scipy import stats

from tests.conftest import write_image_folder
from xaigan import cli
from xaigan.config import ConfigError
from xaigan.experiments import aggregate, collect, load_grid, mean_ci
from xaigan.rundir import RunDir
from xaigan.train import from_config


def test_mean_ci_matches_t_interval():
    values = [54.0, 46.0, 50.5, 49.0]
    mean, std, half = mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(49.875) and std == pytest.approx(np.std(values, ddof=1))
    assert half == pytest.approx((hi - lo) / 2)
    assert math.isnan(mean_ci([3.0])[2])


def _grid_file(tmp_path, dataset, **extra):
    spec = {
        "name": "tiny",
        "base": {"dataset": dataset, "model": "mlp", "batch_size": 32, "eval_every": 1, "eval_n": 64},
        "budgets": {"quick": {"epochs": 2}, "paper": {"epochs": 3}},
        "evaluation": {"n": 200},
        "cells": {
            "normal": {"xai": "none"},
            "saliency": {"xai": "saliency"},
            "normal+da": {"xai": "none", "diffaugment": "translation"},
            "saliency+da": {"xai": "saliency", "diffaugment": "translation"},
        },
        "original": {"saliency": {"fid": 1.5, "source": "somewhere"}},
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_grid_baselines_and_validation(tmp_path):
    grid = load_grid(_grid_file(tmp_path, "fashion-mnist"))
    assert grid.baseline("saliency") == "normal" and grid.baseline("saliency+da") == "normal+da"
    assert grid.baseline("normal") is None
    runs = grid.runs(tmp_path / "out", "quick", [0, 1])
    assert [(r.cell, r.seed) for r in runs[:4]] == [
        ("normal", 0),
        ("saliency", 0),
        ("normal+da", 0),
        ("saliency+da", 0),
    ]
    assert runs[0].cfg.epochs == 2 and runs[0].cfg.seed == 0 and runs[5].cfg.seed == 1
    with pytest.raises(ConfigError, match="budget must be one of quick, paper"):
        grid.cell_config("normal", "huge", 0)
    with pytest.raises(ConfigError, match="fraction must be in"):
        load_grid(_grid_file(tmp_path, "fashion-mnist", cells={"bad": {"fraction": 3}}))
    with pytest.raises(ConfigError, match="unknown grid key"):
        load_grid(_grid_file(tmp_path, "fashion-mnist", colour="red"))


def test_a_baseline_is_found_by_the_resolved_settings(tmp_path):
    """A cell that writes out a default (the model, the full data, no augmentation) still has the baseline that
    leaves it out; one on other data has none."""
    cells = {
        "normal": {"xai": "none"},
        "saliency": {"xai": "saliency", "model": "mlp", "fraction": 1.0, "diffaugment": ""},
        "lime-half": {"xai": "lime", "fraction": 0.5},
    }
    grid = load_grid(_grid_file(tmp_path, "fashion-mnist", cells=cells))
    assert grid.baseline("saliency") == "normal" and grid.baseline("lime-half") is None


@pytest.mark.parametrize("path", ["fmnist35", "fmnist100", "mnist35", "mnist100", "cifar10"])
def test_paper_grids_load(path):
    grid = load_grid(f"configs/paper/{path}.yaml")
    assert {"quick", "paper"} <= set(grid.budgets)
    xais = {grid.cell_config(c, "paper", 0).xai for c in grid.cells}
    assert {"none", "saliency", "deeplift-shap", "lime"} <= xais


@pytest.mark.slow
def test_reproduce_skips_finished_and_resumes_partial(tmp_path):
    write_image_folder(tmp_path / "imgs", n=96, size=32, mode="L")
    path = _grid_file(tmp_path, f"folder:{tmp_path / 'imgs'}")
    grid = load_grid(path)
    out = tmp_path / "out"
    # An interrupted run of one cell, as a killed grid would leave it.
    spec = grid.runs(out, "quick", [0])[1]
    from_config(spec.cfg, spec.run_dir).fit(stop_at_step=4)
    assert RunDir(spec.run_dir).state() == "partial"
    assert cli.main(["reproduce", str(path), "--seeds", "1", "--out", str(out), "--quiet"]) == 0
    assert all(RunDir(s.run_dir).state() == "done" for s in grid.runs(out, "quick", [0]))
    resumed = json.loads((spec.run_dir / "summary.json").read_text())
    assert resumed["steps"] == 2 * 3 and resumed["epochs"] == 2
    stamp = (out / "normal" / "seed_0" / "eval.json").stat().st_mtime_ns
    assert cli.main(["reproduce", str(path), "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    assert (out / "normal" / "seed_0" / "eval.json").stat().st_mtime_ns == stamp  # finished run skipped
    records = [collect(s) for s in grid.runs(out, "quick", [0, 1])]
    rows = {r["cell"]: r for r in aggregate(grid, records)}
    fids = [r["eval"]["fid"] for r in records if r["cell"] == "saliency"]
    assert rows["saliency"]["n_seeds"] == 2 and rows["saliency"]["fid_mean"] == pytest.approx(np.mean(fids))
    base = np.mean([r["eval"]["fid"] for r in records if r["cell"] == "normal"])
    assert rows["saliency"]["fid_change_pct"] == pytest.approx(100 * (np.mean(fids) - base) / base)
    assert rows["saliency"]["paired"]["n_pairs"] == 2 and rows["saliency"]["original"]["fid"] == 1.5

    def n_fid(run_dir):
        return sum('"fid"' in x for x in (run_dir / "metrics.jsonl").read_text().splitlines())

    assert n_fid(out / "normal" / "seed_0") == 2  # eval_every 1: FID after each of the 2 epochs
    assert n_fid(spec.run_dir) == 1  # interrupted outside the grid in epoch 1: only epoch 1 ran under the grid
    report = (out / "report.md").read_text()
    results = report.split("## Results")[1].split("## Late FID")[0]
    assert results.count("\n| ") == 1 + 4  # header + one row per cell
    late = report.split("## Late FID")[1].split("## Curves")[0]
    # header + saliency+da: saliency's seed 0 ran epoch 0 outside the grid, so its late window (its last epoch) is not
    # normal's (both epochs): that pair is left out, and one pair (seed 1) is too few to compare
    assert late.count("\n| ") == 1 + 1 and "| saliency+da |" in late
    assert rows["saliency"]["late_windows"] == {"pairs": 1, "cell": 1.0, "baseline": 0.5}
    assert "saliency" in report and (out / "report.html").is_file()
    # Another budget into the same folder is refused, not mixed in.
    assert cli.main(["reproduce", str(path), "--budget", "paper", "--out", str(out), "--quiet"]) == 2


def test_step_time_ratio_is_paired_median_and_flags_contaminated_runs():
    from xaigan.experiments.aggregate import paired_step_ratio

    def rec(cell, seed, median, mean):
        return {"cell": cell, "seed": seed, "step_median": median, "summary": {"sec_per_step": mean}}

    base = [rec("normal", 0, 0.10, 0.10), rec("normal", 1, 0.20, 0.21), rec("normal", 2, 0.10, 0.40)]
    cell = [rec("shap", 0, 0.30, 0.31), rec("shap", 1, 0.50, 0.50), rec("shap", 2, 0.40, 0.41)]
    out = paired_step_ratio(cell, base)
    # per-seed ratios 3.0, 2.5, 4.0 -> median 3.0; the means would give (0.407 / 0.237) = 1.72
    assert out["ratio"] == pytest.approx(3.0) and out["min"] == pytest.approx(2.5) and out["max"] == pytest.approx(4.0)
    assert out["contaminated"] == ["normal seed 2"] and out["n_pairs"] == 3


def test_step_time_of_guidance_from_mid_run_is_timed_per_phase():
    """Half the epochs plain (0.05 s), half guided (0.5 s): the median of all steps lands between the modes (here
    on a guided step's low tail), so the cost per step is the phases' medians weighted by their steps, and the
    guided steps are compared with the baseline's steps of the same epochs. Numbers by hand."""
    from xaigan.experiments.aggregate import contaminated, paired_step_ratio, step_cost

    plain = [(e, 0.05, False) for e in range(4) for _ in range(5)]  # 20 steps
    guided = [(e, t, True) for e in range(4, 8) for t in (0.2, 0.5, 0.5, 0.5, 0.6)]  # 20 steps, median 0.5
    base_times = [(e, 0.05 if e < 4 else 0.1, False) for e in range(8) for _ in range(5)]  # slower late epochs
    cell = {"cell": "shap", "seed": 0, "step_times": plain + guided, "summary": {"sec_per_step": 0.27}}
    base = {"cell": "normal", "seed": 0, "step_times": base_times, "summary": {"sec_per_step": 0.075}}
    cost = step_cost(cell)
    assert cost["plain"] == pytest.approx(0.05) and cost["guided"] == pytest.approx(0.5)
    assert cost["mean"] == pytest.approx((20 * 0.05 + 20 * 0.5) / 40)  # 0.275
    assert cost["guided_epochs"] == {4, 5, 6, 7}
    assert step_cost(base)["mean"] == pytest.approx(0.075)  # one phase: the median of 20 x 0.05 and 20 x 0.1
    out = paired_step_ratio([cell], [base])
    assert out["guided"] == pytest.approx(0.5 / 0.1)  # against the baseline's epochs 4-7, not its whole run
    assert out["ratio"] == pytest.approx(0.275 / 0.075) and out["n_pairs"] == 1
    assert not contaminated(cell) and not contaminated(base)  # the two modes are not a stall
    stalled = [*guided[:-2], (7, 4.0, True), (7, 4.0, True)]  # guided mean 0.805 > 1.5 x median 0.5
    assert contaminated({**cell, "step_times": plain + stalled})


@pytest.mark.parametrize(
    "name", ["fmnist35-powered", "fmnist35-methods", "fmnist-efficiency", "fmnist-efficiency-steps"]
)
def test_study_grids_load_at_the_papers_schedule(name):
    grid = load_grid(f"configs/study/{name}.yaml")
    for cell in grid.cells:
        cfg = grid.cell_config(cell, "paper", 0)
        if cfg.xai != "none":  # the original switches xAI on at epoch ceil(E/2)
            assert cfg.xai_start_epoch == -(-cfg.epochs // 2)
    assert len(grid.seeds) >= (10 if name == "fmnist35-powered" else 3)


@pytest.mark.slow
def test_reproduce_one_row_runs_that_cell_and_its_baseline_only(tmp_path, capsys):
    """``--cells saliency+da``: the cell and the baseline it is compared with (normal+da), nothing else; an unknown
    cell is one error naming the grid's cells, before anything is written."""
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    path = _grid_file(tmp_path, f"folder:{tmp_path / 'imgs'}", controls={"saliency": "saliency+da"})
    grid = load_grid(path)
    assert grid.with_references(["saliency+da"]) == ["normal+da", "saliency+da"]
    assert grid.with_references(["saliency"]) == ["normal", "saliency", "normal+da", "saliency+da"]
    out = tmp_path / "out"
    assert (
        cli.main(["reproduce", str(path), "--seeds", "1", "--out", str(out), "--quiet", "--cells", "saliency+da"]) == 0
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "report_files") == [
        "normal+da",
        "saliency+da",
    ]
    assert RunDir(out / "saliency+da" / "seed_0").state() == "done"
    assert "saliency+da vs normal+da" in (out / "report.md").read_text()
    assert cli.main(["reproduce", str(path), "--out", str(tmp_path / "o2"), "--cells", "salency"]) == 2
    err = capsys.readouterr().err
    assert "no cell salency in grid tiny; cells: normal, saliency, normal+da, saliency+da" in err
    assert not (tmp_path / "o2").exists()


def test_collect_takes_the_median_step_time_and_the_last_three_fids(tmp_path):
    """A run's step time is the median of its logged per-step times (a stall does not move it) and its late FID the
    mean of its last three in-training FIDs; both computed by hand here."""
    from types import SimpleNamespace

    run = tmp_path / "normal" / "seed_0"
    run.mkdir(parents=True)
    times = [0.10, 0.12, 5.0, 0.11, 0.10, 0.13, 0.10]  # one stall
    fids = [120.0, 90.0, 60.0, 50.0, 40.0]
    lines = [{"step": i, "sec_per_step": t} for i, t in enumerate(times)]
    lines += [{"epoch": e, "fid": f} for e, f in enumerate(fids)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = collect(SimpleNamespace(cell="normal", seed=0, run_dir=run))
    assert record["step_median"] == pytest.approx(0.11)  # sorted: .10 .10 .10 [.11] .12 .13 5.0
    assert record["late_fid"] == pytest.approx(50.0)  # (60 + 50 + 40) / 3
    assert (record["cell"], record["seed"], record["summary"], record["eval"]) == ("normal", 0, {}, {})
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "sec_per_step": 0.2}) + "\n")
    assert collect(SimpleNamespace(cell="normal", seed=0, run_dir=run))["late_fid"] is None
    guided = {"epoch": 3, "step": 9, "sec_per_step": 0.5, "xai_explained": 0.4}  # a step that logged xAI stats
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [{"epoch": 2, **lines[0]}, guided]))
    assert collect(SimpleNamespace(cell="saliency", seed=0, run_dir=run))["step_times"] == [
        (2, 0.10, False),
        (3, 0.5, True),
    ]
