"""``reproduce --record``: finished runs' small artefacts kept apart (to commit), skipped when recorded, and a report
rebuilt from the record alone."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.conftest import write_image_folder
from xaigan import cli
from xaigan.config import ConfigError
from xaigan.experiments.record import KEEP_STEPS, _thin_metrics


def _grid(tmp_path):
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    spec = {
        "name": "rec",
        "base": {"dataset": f"folder:{tmp_path / 'imgs'}", "batch_size": 32, "tensorboard": False},
        "budgets": {"quick": {"epochs": 3}},
        "evaluation": {"n": 100},
        "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency", "xai_start": 0.0}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _reproduce(grid, out, record, seeds, workers="1"):
    args = ["reproduce", str(grid), "--out", str(out), "--record", str(record), "--seeds", str(seeds), "--quiet"]
    return cli.main([*args, "--workers", workers])


@pytest.mark.slow
def test_record_holds_small_artefacts_skips_recorded_runs_and_rebuilds_the_report(tmp_path, capsys):
    grid, record = _grid(tmp_path), tmp_path / "results"
    assert _reproduce(grid, tmp_path / "out", record, 1) == 0
    run = record / "normal" / "seed_0"
    names = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert names == [
        "config.yaml",
        "data.json",
        "eval.json",
        "metrics.jsonl",
        "samples/epoch_0002.png",
        "summary.json",
    ]
    assert len(list((record / "saliency" / "seed_0" / "explanations").glob("*.png"))) == 3
    original = json.loads((tmp_path / "out" / "normal" / "seed_0" / "eval.json").read_text())
    assert json.loads((run / "eval.json").read_text()) == original
    assert (record / "report.md").is_file() and "| normal |" in (record / "report.md").read_text()

    # The record alone gives the report (run folders deleted), also as a markdown file elsewhere.
    shutil.rmtree(tmp_path / "out")
    docs = tmp_path / "docs"
    assert cli.main(["report", str(record), "--markdown", str(docs / "results.md")]) == 0
    text = (docs / "results.md").read_text()
    links = re.findall(r"\]\(([^)]+\.(?:png|svg))\)", text)
    assert links and all((docs / link).resolve().is_file() for link in links)
    assert all(link.startswith("results_files/") for link in links)  # beside it: the record's images are not kept

    # A second seed: seed 0 comes from the record (not trained again), seed 1 is trained and recorded.
    capsys.readouterr()
    assert _reproduce(grid, tmp_path / "out2", record, 2, workers="2") == 0
    assert not (tmp_path / "out2" / "normal" / "seed_0").exists()
    assert (record / "saliency" / "seed_1" / "eval.json").is_file()
    assert json.loads((record / "grid.json").read_text())["seeds"] == [0, 1]
    assert "seeds [0, 1]; 4 finished runs" in (record / "report.md").read_text()

    # A record made with other settings is refused, naming the folder; nothing in it changes.
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["lr_g"] = 0.1
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = (run / "eval.json").read_bytes()
    capsys.readouterr()
    assert _reproduce(grid, tmp_path / "out3", record, 2) == 2
    assert "trained with other settings (lr_g)" in capsys.readouterr().err
    assert (run / "eval.json").read_bytes() == before


def test_thinned_metrics_keep_every_event_and_first_and_last_step():
    steps = [json.dumps({"step": i, "d_loss": 1.0, "g_loss": 2.0}) for i in range(1, 1001)]
    evals = [json.dumps({"epoch": e, "step": 200 * e, "fid": 10.0 - e}) for e in range(5)]
    lines = steps[:500] + evals + steps[500:]
    kept = [json.loads(x) for x in _thin_metrics(lines).splitlines()]
    kept_steps = [r["step"] for r in kept if "d_loss" in r]
    assert len(kept_steps) <= KEEP_STEPS + 1 and kept_steps[0] == 1 and kept_steps[-1] == 1000
    assert sum("fid" in r for r in kept) == 5
    assert kept_steps == sorted(kept_steps)


def test_a_recorded_dcgan_run_in_step_mode_is_skipped_not_refused(tmp_path, capsys):
    """A BatchNorm D resolves explain_mode "step" to "batch" and the run stores that: the grid's "step" is the same
    run (once, rerunning such a recorded study failed with "trained with other settings (explain_mode)")."""
    write_image_folder(tmp_path / "imgs", n=32, size=32, mode="L")
    spec = {
        "name": "dc",
        "base": {"dataset": f"folder:{tmp_path / 'imgs'}", "model": "dcgan", "batch_size": 16, "tensorboard": False},
        "budgets": {"quick": {"epochs": 1}},
        "evaluation": {"n": 32},
        "cells": {"saliency": {"xai": "saliency", "xai_start": 0.0, "explain_mode": "step"}},
    }
    grid, record = tmp_path / "grid.yaml", tmp_path / "results"
    grid.write_text(yaml.safe_dump(spec))
    assert _reproduce(grid, tmp_path / "out", record, 1) == 0
    assert yaml.safe_load((record / "saliency" / "seed_0" / "config.yaml").read_text())["explain_mode"] == "batch"
    capsys.readouterr()
    assert _reproduce(grid, tmp_path / "out2", record, 1) == 0
    assert not (tmp_path / "out2" / "saliency" / "seed_0").exists()
    assert "trained with other settings" not in capsys.readouterr().err


def test_resolved_settings_are_compared_as_the_trainer_resolves_them(tmp_path):
    """Stored "batch" matches a wanted "step" only for a D with BatchNorm (DCGAN), not for the MLP, whose "step" stays
    "step"; "auto" resolves to "batch" (BatchNorm) or "eval"; a run without a data description is not refused."""
    import pytest

    from xaigan.config import ConfigError
    from xaigan.experiments import load_grid
    from xaigan.experiments.record import check_same_config
    from xaigan.rundir import RunDir

    def spec_for(model, mode):
        path = tmp_path / f"{model}-{mode}.yaml"
        cells = {"s": {"xai": "saliency", "model": model, "explain_mode": mode}}
        path.write_text(
            yaml.safe_dump(
                {"name": "g", "base": {"dataset": "mnist"}, "budgets": {"quick": {"epochs": 2}}, "cells": cells}
            )
        )
        (spec,) = load_grid(path).runs(tmp_path / f"out-{model}-{mode}", "quick", [0])
        return spec

    def store(spec, stored_mode, shape=(1, 32, 32)):
        run = RunDir(spec.run_dir)
        run.write_config({**spec.cfg.to_dict(), "explain_mode": stored_mode, "d_output": "logit"})
        if shape:
            run.write_data_meta({"image_shape": list(shape)})

    for model, mode, stored, same in [
        ("dcgan", "step", "batch", True),
        ("dcgan", "auto", "batch", True),
        ("dcgan", "step", "step", False),
        ("mlp", "step", "batch", False),
        ("mlp", "step", "step", True),
        ("mlp", "auto", "eval", True),
        ("mlp", "auto", "batch", False),
    ]:
        spec = spec_for(model, mode)
        store(spec, stored)
        if same:
            check_same_config(spec)
        else:
            with pytest.raises(ConfigError, match=r"\(explain_mode\)"):
                check_same_config(spec)
    spec = spec_for("mlp", "step")
    RunDir(spec.run_dir).data_path.unlink()
    store(spec, "batch", shape=None)
    check_same_config(spec)  # no data description: D cannot be built, so the resolved settings are not compared


@pytest.mark.slow
def test_runs_trained_before_an_interruption_are_recorded_before_other_runs_train(tmp_path, monkeypatch):
    """A run trained but not yet evaluated when a grid stopped is scored and recorded as soon as the grid starts
    again, not only after every other run's training (which may be interrupted again, for hours)."""
    from xaigan.experiments import executors

    grid, record = _grid(tmp_path), tmp_path / "results"
    out = tmp_path / "out"
    assert cli.main(["reproduce", str(grid), "--out", str(out), "--seeds", "1", "--no-eval", "--quiet"]) == 0
    assert not (record / "normal" / "seed_0").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "train_parallel", interrupted)
    assert _reproduce(grid, out, record, 2, workers="2") != 0  # the seed-1 runs never train
    for cell in ("normal", "saliency"):
        assert (record / cell / "seed_0" / "eval.json").is_file(), cell
        assert not (record / cell / "seed_1").exists()


@pytest.mark.slow
def test_each_run_is_recorded_once(tmp_path, monkeypatch):
    """A run trained before the grid started again, and runs trained by workers, are recorded once each, not again
    in the grid's final pass."""
    from xaigan.experiments import finish

    grid, record, out = _grid(tmp_path), tmp_path / "results", tmp_path / "out"
    assert cli.main(["reproduce", str(grid), "--out", str(out), "--seeds", "1", "--no-eval", "--quiet"]) == 0
    calls, real = [], finish.record_run

    def counted(run, dest):
        calls.append(dest.relative_to(record))
        real(run, dest)

    monkeypatch.setattr(finish, "record_run", counted)
    assert _reproduce(grid, out, record, 2, workers="2") == 0
    assert sorted(map(str, calls)) == [f"{c}/seed_{s}" for c in ("normal", "saliency") for s in (0, 1)]


def test_a_record_of_another_grid_or_budget_is_refused(tmp_path, capsys):
    """Two studies never mix in one record folder: reproduce refuses a record written for another grid (or budget),
    with one message and exit 2, before training anything, and leaves the record as it was."""
    from xaigan.experiments import load_grid
    from xaigan.experiments.record import write_record_meta

    grid, record, out = _grid(tmp_path), tmp_path / "results", tmp_path / "out"
    write_record_meta(record, load_grid(grid), "quick", [0])
    before = (record / "grid.json").read_bytes()
    other = tmp_path / "other.yaml"
    other.write_text(grid.read_text().replace("name: rec", "name: other"))
    capsys.readouterr()
    assert _reproduce(other, out, record, 1) == 2
    err = capsys.readouterr().err
    assert "records grid 'rec' budget 'quick', not 'other'" in err and "another --record folder" in err
    assert (record / "grid.json").read_bytes() == before
    assert not list(out.glob("*/seed_*/checkpoints/*.pt"))


def test_a_refused_plan_leaves_the_record_and_the_grid_folder_as_they_were(tmp_path, monkeypatch):
    """A grid refused while planning (a run trained with other settings) writes neither the record's ``grid.json``
    (its seeds) nor the output folder's: a later report reads what was really run."""
    from xaigan.experiments import load_grid, plan, runner
    from xaigan.experiments.record import write_record_meta

    grid, record, out = _grid(tmp_path), tmp_path / "results", tmp_path / "out"
    write_record_meta(record, load_grid(grid), "quick", [0])
    before = (record / "grid.json").read_bytes()

    def refused(*args, **kwargs):
        raise ConfigError(f"{out}/normal/seed_0 was trained with other settings (lr_d); use another folder")

    monkeypatch.setattr(runner, "plan_runs", refused)
    with pytest.raises(ConfigError, match="other settings"):
        runner.run_grid(load_grid(grid), out, budget="quick", seeds=[0, 1, 2], record=record)
    assert (record / "grid.json").read_bytes() == before
    assert not (out / "grid.json").exists()
    assert plan.plan_runs is not refused  # only the runner's reference was replaced


def test_evenly_spaced_keeps_the_first_the_last_and_even_steps_between():
    from pathlib import Path

    from xaigan.experiments.record import evenly_spaced

    paths = [Path(f"epoch_{i:04d}.png") for i in range(11)]
    assert evenly_spaced(paths) == [paths[0], paths[5], paths[10]]
    assert evenly_spaced(paths[:10], k=4) == [paths[0], paths[3], paths[6], paths[9]]
    assert evenly_spaced(paths[:2]) == paths[:2] and evenly_spaced([]) == []


def test_a_run_trained_under_auto_precision_matches_auto_but_not_another_precision(tmp_path):
    """``precision: auto`` is resolved by the machine that trains (config.yaml records fp32 or bf16): the same grid
    asking for auto again finds its run, one asking for the other precision is refused."""
    import pytest

    from xaigan.config import ConfigError
    from xaigan.experiments import load_grid
    from xaigan.experiments.record import check_same_config
    from xaigan.rundir import RunDir

    def spec_for(precision):
        path = tmp_path / f"{precision}.yaml"
        cells = {"s": {"xai": "none", "precision": precision}}
        path.write_text(
            yaml.safe_dump({"name": "g", "base": {"dataset": "mnist"}, "budgets": {"q": {"epochs": 2}}, "cells": cells})
        )
        (spec,) = load_grid(path).runs(tmp_path / "out", "q", [0])
        return spec

    RunDir(spec_for("auto").run_dir).write_config({**spec_for("fp32").cfg.to_dict()})
    check_same_config(spec_for("auto"))
    check_same_config(spec_for("fp32"))
    with pytest.raises(ConfigError, match=r"\(precision\)"):
        check_same_config(spec_for("bf16"))
