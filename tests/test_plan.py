"""``reproduce --dry-run``: each run's state and progress, who trains it now, and the time left, from run folders
built by hand (no training), checked against hand computations."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from xaigan import cli
from xaigan.experiments import load_grid
from xaigan.experiments.plan import PlannedRun, plan_grid, seconds_per_run, time_left
from xaigan.rundir import RunDir, flock_holders


def _grid(tmp_path: Path) -> Path:
    spec = {
        "name": "tiny",
        "base": {"dataset": "fashion-mnist", "model": "mlp"},
        "budgets": {"paper": {"epochs": 4}},
        "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency"}, "lime": {"xai": "lime"}},
        "seeds": [0, 1, 2],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _finished(folder: Path, train_seconds: float, eval_seconds: float) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"train_seconds": train_seconds}))
    (folder / "eval.json").write_text(json.dumps({"fid": 1.0, "seconds": eval_seconds}))


def _checkpoint(folder: Path, epoch: int, position: int, step: int) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(
        {"epoch": epoch, "position": position, "step": step, "G": {"w": torch.zeros(3)}},
        folder / "checkpoints" / "last.pt",
    )


@pytest.fixture
def study(tmp_path):
    """seed 0: normal and saliency recorded (100 + 10 s, 290 + 10 s), lime finished in the out folder (500 s);
    seed 1: normal paused at epoch 2 and 4 of its 8 steps per epoch (done 2.5 / 4), saliency trained and not scored,
    lime new; seed 2: all new."""
    record, out = tmp_path / "rec", tmp_path / "out"
    _finished(record / "normal" / "seed_0", 100, 10)
    _finished(record / "saliency" / "seed_0", 290, 10)
    _finished(out / "lime" / "seed_0", 480, 20)
    _checkpoint(out / "normal" / "seed_1", epoch=2, position=4, step=20)
    (out / "saliency" / "seed_1").mkdir(parents=True)
    (out / "saliency" / "seed_1" / "summary.json").write_text(json.dumps({"train_seconds": 1.0}))
    return load_grid(_grid(tmp_path)), record, out


def test_plan_reads_each_runs_state_and_progress(study):
    grid, record, out = study
    planned = plan_grid(grid, out, budget="paper", seeds=[0, 1, 2], record=record)
    got = {(r.cell, r.seed): (r.state, r.done, r.left) for r in planned}
    assert got["normal", 0] == ("recorded", 1.0, 0.0)
    assert got["lime", 0] == ("done", 1.0, 0.0)
    assert got["normal", 1] == ("partial", pytest.approx(2.5 / 4), pytest.approx(1.5 / 4))  # 20 steps = 2 x 8 + 4
    assert got["saliency", 1][0] == "trained" and got["saliency", 1][2] == 0.0
    assert got["lime", 1] == ("new", 0.0, 1.0) and got["normal", 2] == ("new", 0.0, 1.0)
    assert [(r.cell, r.seed) for r in planned][:4] == [("normal", 0), ("saliency", 0), ("lime", 0), ("normal", 1)]
    per_run = seconds_per_run(grid.runs(out, "paper", [0, 1, 2]), record)
    assert per_run == {"normal": 110.0, "saliency": 300.0, "lime": 500.0}


def test_time_left_schedules_runs_in_order_on_free_workers():
    """Runs in progress first, then in order, each to the first worker free: by hand, 2 workers take 30 (in
    progress), 300 | 100 after 30 -> 130 | 500 after 130 -> 630; the 'x' run has no known length."""
    runs = [
        PlannedRun("a", 0, "new", 4, 0.0),
        PlannedRun("b", 0, "new", 4, 0.0),
        PlannedRun("c", 0, "new", 4, 0.0),
        PlannedRun("a", 1, "partial", 4, 0.7, holder=123),
        PlannedRun("x", 0, "new", 4, 0.0),
        PlannedRun("a", 2, "recorded", 4, 1.0),
    ]
    eta = time_left(runs, {"a": 100.0, "b": 300.0, "c": 500.0}, workers=2)
    # order: a1 (30), a0 (100), b0 (300), c0 (500): w1 30, w2 100, w1 30+300=330, w2 100+500=600
    assert eta["seconds"] == pytest.approx(600.0) and eta["work"] == pytest.approx(930.0)
    assert [(r.cell, r.seed) for r in eta["unknown"]] == [("x", 0)]
    assert time_left(runs, {"a": 100.0, "b": 300.0, "c": 500.0}, workers=1)["seconds"] == pytest.approx(930.0)


def test_flock_holders_parses_proc_locks(tmp_path):
    locks = tmp_path / "locks"
    locks.write_text(
        "1: FLOCK  ADVISORY  WRITE 7555 fe:00:5474437 0 EOF\n"
        "1: -> FLOCK  ADVISORY  WRITE 7600 fe:00:5474437 0 EOF\n"  # a process waiting for the same lock
        "2: POSIX  ADVISORY  WRITE 812 00:1a:99 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 7558 103:02:12 0 EOF\n"
    )
    assert flock_holders(str(locks)) == {(254, 0, 5474437): 7555, (259, 2, 12): 7558}
    assert flock_holders(str(tmp_path / "missing")) == {}


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="Linux's /proc/locks")
def test_holder_names_the_process_training_a_run(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.holder() is None  # no lock file yet
    lock = run.lock()
    try:
        assert run.holder() == os.getpid()
    finally:
        lock.release()
    assert run.holder() is None  # the file is left, the lock is not


def test_dry_run_prints_the_plan_and_writes_nothing(study, tmp_path, capsys):
    """lime seed 1 is being trained by this process (it holds the folder's lock) and has logged epoch 1 of 4."""
    grid, record, out = study
    busy = RunDir(out / "lime" / "seed_1")
    lock = busy.lock()
    busy.metrics_path.write_text(json.dumps({"epoch": 1, "step": 9, "sec_per_step": 0.1}) + "\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [
        *("reproduce", str(grid.path), "--budget", "paper", "--record", str(record), "--out", str(out)),
        *("--workers", "2", "--dry-run"),
    ]
    try:
        assert cli.main(args) == 0
    finally:
        lock.release()
    text = capsys.readouterr().out
    assert f"9 runs; 2 recorded, 1 finished here, 1 training now (pid {os.getpid()})" in text
    assert "seed 1 62% (paused)" in text and "seed 1 trained, to score" in text
    assert f"seed 1 25% (training, pid {os.getpid()})" in text
    # left, the run in training first: lime 1 (0.75 x 500 = 375), normal 1 (0.375 x 110 = 41), normal 2 (110),
    # saliency 2 (300), lime 2 (500); two workers: w2 375, w1 41, w1 151, w1 451, w2 875 -> 875 s = 15 min of
    # 1326 s = 22 min
    assert "time left: ~15 min on 2 worker(s) (22 min of training)" in text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
