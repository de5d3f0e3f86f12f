"""A grid's run in its three steps: the plan (what is left, what is recorded), the executors behind one interface,
and the finish (evaluation with the grid's settings, recording once), checked with stand-ins for training and
scoring: no run is trained here (``tests/test_cluster.py`` trains a tiny grid on every executor)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xaigan.config import Config, ConfigError
from xaigan.errors import InputError
from xaigan.experiments import (
    EvalSettings,
    PoolExecutor,
    RayExecutor,
    RunsFailedError,
    SerialExecutor,
    executors,
    finish,
    load_grid,
    make_executor,
    run_grid,
)
from xaigan.experiments.finish import Finisher
from xaigan.experiments.plan import plan_runs
from xaigan.rundir import RunDir


def _grid(tmp_path: Path, **extra):
    """Two cells (a, b) of a grid that is never trained."""
    spec = {
        "name": "g",
        "base": {"dataset": "fashion-mnist", "model": "mlp"},
        "budgets": {"quick": {"epochs": 2}},
        "cells": {"a": {"xai": "none"}, "b": {"xai": "saliency"}},
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_grid(path)


def _trained(folder: Path, steps: int = 5) -> None:
    RunDir(folder).write_summary({"steps": steps, "train_seconds": 1.0})


@pytest.fixture
def scored(monkeypatch):
    """Stand-ins for the feature extractor and the final evaluation: each Evaluator built and each run scored is
    logged; a scored run gets an eval.json (FID = the n it was scored with)."""
    log = {"evaluators": [], "scored": []}

    class FakeEvaluator:
        def __init__(self, dataset, *, data_dir, reference, features):
            log["evaluators"].append((dataset, data_dir, reference, features))

    def fake_evaluate_run(run, *, n, evaluator):
        assert isinstance(evaluator, FakeEvaluator)
        log["scored"].append((RunDir(run).path.parent.name, RunDir(run).path.name, n))
        RunDir(run).write_eval({"fid": float(n)})

    monkeypatch.setattr(finish, "Evaluator", FakeEvaluator)
    monkeypatch.setattr(finish, "evaluate_run", fake_evaluate_run)
    return log


def test_eval_settings_are_the_config_defaults_under_the_grids_section(tmp_path):
    """The final evaluation's defaults are those a single run's config has (eval_n 10000, domain features, all of
    the real data), and each key the grid's ``evaluation:`` section gives replaces its default alone."""
    assert EvalSettings.from_grid(_grid(tmp_path)) == EvalSettings(n=10000, features="domain", reference="all")
    cfg = Config()
    assert EvalSettings() == EvalSettings(cfg.eval_n, cfg.eval_features, cfg.eval_reference)
    one = EvalSettings.from_grid(_grid(tmp_path, evaluation={"n": 200}))
    assert one == EvalSettings(n=200, features="domain", reference="all")
    every = {"n": 64, "features": "inception", "reference": "test"}
    assert EvalSettings.from_grid(_grid(tmp_path, evaluation=every)) == EvalSettings(64, "inception", "test")
    with pytest.raises(ConfigError, match=r"unknown evaluation key\(s\) \['size'\]; allowed: n, features, reference"):
        _grid(tmp_path, evaluation={"size": 5})
    # values are checked when the grid loads, before any run trains (they were found only after training)
    with pytest.raises(ConfigError, match=r"evaluation: eval_features must be one of domain, inception; got 'domian'"):
        _grid(tmp_path, evaluation={"features": "domian"})
    with pytest.raises(ConfigError, match=r"evaluation: eval_n must be > 0"):
        _grid(tmp_path, evaluation={"n": 0})


def test_the_finisher_scores_with_the_grids_settings_and_finishes_each_run_once(tmp_path, scored, monkeypatch):
    """One evaluator per dataset, built with the grid's reference and features; each run scored with the grid's n
    and recorded once, however often it is finished; an unscored run (no evaluation) is not recorded, a scored one
    is."""
    grid = _grid(tmp_path, evaluation={"n": 300, "reference": "train"})
    specs = grid.runs(tmp_path / "out", "quick", [0, 1])
    recorded = []
    monkeypatch.setattr(finish, "record_run", lambda run, dest: recorded.append(dest.relative_to(tmp_path)))
    for spec in specs[:3]:
        _trained(spec.run_dir)
    done = Finisher(EvalSettings.from_grid(grid), tmp_path / "rec")
    for spec in specs + specs:
        done(spec)
    assert scored["evaluators"] == [("fashion-mnist", None, "train", "domain")]
    assert scored["scored"] == [("a", "seed_0", 300), ("b", "seed_0", 300), ("a", "seed_1", 300)]
    assert recorded == [Path("rec/a/seed_0"), Path("rec/b/seed_0"), Path("rec/a/seed_1")]
    assert RunDir(specs[3].run_dir).state() == "new"

    recorded.clear()
    _trained(specs[3].run_dir)
    unscored = Finisher(None, tmp_path / "rec")
    for spec in specs:
        unscored(spec)
    assert len(scored["scored"]) == 3 and RunDir(specs[3].run_dir).state() == "trained"
    assert recorded == [Path("rec/a/seed_0"), Path("rec/b/seed_0"), Path("rec/a/seed_1")]  # the runs scored before


def test_the_plan_skips_recorded_runs_and_trains_what_is_left(tmp_path):
    """Recorded runs stand in from the record; of the others, the new, started and partial ones are left to train;
    a run folder trained with other settings is refused."""
    grid = _grid(tmp_path)
    out, record = tmp_path / "out", tmp_path / "rec"
    specs = grid.runs(out, "quick", [0, 1])
    RunDir(record / "a" / "seed_0").write_summary({"steps": 1})
    RunDir(record / "a" / "seed_0").write_eval({"fid": 1.0})
    _trained(out / "b" / "seed_0")
    (out / "a" / "seed_1" / "checkpoints").mkdir(parents=True)
    (out / "a" / "seed_1" / "checkpoints" / "last.pt").write_bytes(b"")
    plan = plan_runs(grid, out, budget="quick", seeds=[0, 1], cells=None, record=record)
    assert plan.recorded == {("a", 0)}
    assert [s.run_dir for s in plan.runs] == [record / "a" / "seed_0", *(s.run_dir for s in specs[1:])]
    assert [(s.cell, s.seed) for s in plan.here] == [("b", 0), ("a", 1), ("b", 1)]
    assert [(s.cell, s.seed) for s in plan.to_train()] == [("a", 1), ("b", 1)]
    assert plan_runs(grid, out, budget="quick", seeds=[0, 1], cells=None, record=None).recorded == frozenset()
    RunDir(out / "b" / "seed_1").write_config({**specs[3].cfg.to_dict(), "lr_g": 0.5})
    with pytest.raises(ConfigError, match=r"other settings \(lr_g\)"):
        plan.to_train()


class FakeExecutor:
    """Trains by writing each run's summary; the runs in ``fail`` fail instead. Logs what it was given and what was
    finished before it started."""

    name = "fake"

    def __init__(self, out: Path, fail=()):
        self.out, self.fail, self.given, self.done_before = out, set(fail), [], None

    def run(self, todo, on_done, *, grid, progress):
        self.given.append([(s.cell, s.seed) for s in todo])
        self.done_before = sorted(str(p.relative_to(self.out)) for p in self.out.glob("*/seed_*/eval.json"))
        failed = []
        for spec in todo:
            if (spec.cell, spec.seed) in self.fail:
                failed.append({"cell": spec.cell, "seed": spec.seed, "run_dir": str(spec.run_dir), "error": "boom"})
                continue
            _trained(spec.run_dir, steps=7)
            on_done(spec)
        return failed


def test_run_grid_scores_old_runs_first_trains_the_rest_on_its_executor_and_reports_failures(tmp_path, scored):
    grid = _grid(tmp_path, evaluation={"n": 50})
    out, record = tmp_path / "out", tmp_path / "rec"
    RunDir(record / "a" / "seed_0").write_summary({"steps": 3})
    RunDir(record / "a" / "seed_0").write_eval({"fid": 9.0})
    _trained(out / "b" / "seed_0")  # trained before an interruption, not scored
    fake = FakeExecutor(out, fail={("b", 1)})
    with pytest.raises(RunsFailedError) as caught:
        run_grid(grid, out, seeds=[0, 1], record=record, executor=fake, progress=False)
    assert fake.given == [[("a", 1), ("b", 1)]]
    assert fake.done_before == ["b/seed_0/eval.json"]  # scored before any other run trained
    meta = json.loads((out / "grid.json").read_text())
    assert meta["executor"] == "fake" and meta["failed"] == caught.value.failed
    assert [(f["cell"], f["seed"]) for f in caught.value.failed] == [("b", 1)]
    assert sorted(str(p.relative_to(record)) for p in record.glob("*/seed_*")) == ["a/seed_0", "a/seed_1", "b/seed_0"]

    again = FakeExecutor(out)
    records = run_grid(grid, out, seeds=[0, 1], record=record, executor=again, progress=False)
    assert again.given == [[("b", 1)]]
    assert [(r["cell"], r["seed"], r["summary"]["steps"], r["eval"]["fid"]) for r in records] == [
        ("a", 0, 3, 9.0),
        ("b", 0, 5, 50.0),
        ("a", 1, 7, 50.0),
        ("b", 1, 7, 50.0),
    ]
    assert records[0]["run_dir"] == str(record / "a" / "seed_0")
    assert "failed" not in json.loads((out / "grid.json").read_text())

    nothing = FakeExecutor(out)
    assert len(run_grid(grid, out, seeds=[0, 1], record=record, executor=nothing, progress=False)) == 4
    assert nothing.given == []  # nothing left to train: the executor is not started (Ray would connect)


def test_make_executor_picks_the_executor_by_name():
    assert isinstance(make_executor(), SerialExecutor) and isinstance(make_executor("local", workers=1), SerialExecutor)
    assert make_executor("local", workers=3) == PoolExecutor(3)
    assert make_executor("local", workers="auto") == PoolExecutor("auto")
    assert make_executor("ray", ray_options={"retries": 0}) == RayExecutor({"retries": 0})
    assert make_executor("ray") == RayExecutor({})
    assert {SerialExecutor.name, PoolExecutor.name, RayExecutor.name} == {"local", "ray"}
    with pytest.raises(InputError, match="executor must be one of local, ray, got 'slurm'"):
        make_executor("slurm")


def test_a_pool_of_one_worker_or_for_one_run_trains_in_this_process(tmp_path, monkeypatch):
    """Worker processes only pay off for two runs or more on two workers or more; "auto" asks auto_workers."""
    specs = _grid(tmp_path).runs(tmp_path / "out", "quick", [0])
    calls = []
    monkeypatch.setattr(SerialExecutor, "run", lambda self, todo, on_done, **kw: calls.append(("serial", len(todo))))
    monkeypatch.setattr(executors, "train_parallel", lambda todo, workers, **kw: calls.append(("pool", workers)))
    monkeypatch.setattr(executors, "auto_workers", lambda cfgs: 1 if len(cfgs) < 2 else 4)
    done = []
    for workers, todo in ((2, specs[:1]), (1, specs), ("auto", specs[:1]), ("auto", specs), (2, specs)):
        PoolExecutor(workers).run(todo, done.append, grid="g", progress=False)
    assert calls == [("serial", 1), ("serial", 2), ("serial", 1), ("pool", 4), ("pool", 2)]
