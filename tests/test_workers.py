"""``xaigan reproduce --workers N``: runs trained N at a time in separate processes give the same files as one at a
time, and a dead worker's runs resume on the next invocation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import write_image_folder
from xaigan.io import load_torch
from xaigan.rundir import RunDir

CELLS = ("normal", "saliency")
SEEDS = (0, 1)


@pytest.fixture
def grid(tmp_path):
    write_image_folder(tmp_path / "imgs", n=60, size=16, mode="L")
    spec = {
        "name": "w",
        "base": {"dataset": f"folder:{tmp_path / 'imgs'}", "batch_size": 20, "tensorboard": False},
        "budgets": {"quick": {"epochs": 2}},
        "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency", "xai_start": 0.0}},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "grid.yaml"


def _reproduce(grid, out, workers, env=None):
    args = [sys.executable, "-m", "xaigan", "reproduce", str(grid), "--out", str(out), "--seeds", str(len(SEEDS))]
    args += ["--no-eval", "--quiet", "--workers", str(workers)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=600)


def _weights(out):
    result = {}
    for cell in CELLS:
        for seed in SEEDS:
            state = load_torch(RunDir(out / cell / f"seed_{seed}").checkpoint())
            result[cell, seed] = [state[net][k] for net in ("G", "D") for k in sorted(state[net])]
    return result


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key])), key


@pytest.mark.slow
def test_parallel_runs_equal_one_at_a_time_and_a_dead_worker_resumes(grid, tmp_path):
    one = _reproduce(grid, tmp_path / "one", workers=1)
    assert one.returncode == 0, one.stderr
    two = _reproduce(grid, tmp_path / "two", workers=2)
    assert two.returncode == 0, two.stderr
    _same(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    # every worker dies at its 6th file write (mid-run, after a checkpoint); the next invocation finishes the grid
    died = _reproduce(grid, tmp_path / "died", workers=2, env={"XAIGAN_FAILPOINT": "kill:6"})
    errors = [line for line in died.stderr.splitlines() if line.startswith("xaigan: error")]
    assert died.returncode == 1 and len(errors) == 1 and "worker process died" in errors[0], died.stderr
    again = _reproduce(grid, tmp_path / "died", workers=2)
    assert again.returncode == 0, again.stderr
    _same(_weights(tmp_path / "one"), _weights(tmp_path / "died"))


@pytest.mark.slow
def test_workers_must_be_positive(grid, capsys):
    from xaigan import cli

    assert cli.main(["reproduce", str(grid), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def _children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found |= {int(c) for c in f.read().split()}
    return found


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _long_grid(tmp_path, epochs: int, seeds: int):
    """A one-cell grid of ``seeds`` runs long enough to be interrupted, its output folder and the ``reproduce``
    command line (2 workers, no evaluation)."""
    write_image_folder(tmp_path / "imgs", n=60, size=16, mode="L")
    spec = {
        "name": "long",
        "base": {"dataset": f"folder:{tmp_path / 'imgs'}", "batch_size": 20, "tensorboard": False, "log_every": 1},
        "budgets": {"quick": {"epochs": epochs}},
        "cells": {"normal": {"xai": "none"}},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "xaigan", "reproduce", str(tmp_path / "grid.yaml"), "--out", str(out)]
    return out, args + ["--seeds", str(seeds), "--no-eval", "--quiet", "--workers", "2"]


@pytest.mark.slow
def test_workers_stop_when_reproduce_is_killed(tmp_path):
    """SIGKILL of the ``reproduce`` process: its workers checkpoint and exit (none trains on orphaned), and the
    same command afterwards finishes the grid."""
    import signal
    import time

    out, args = _long_grid(tmp_path, epochs=60, seeds=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("normal/seed_*/checkpoints/last.pt")):
            time.sleep(0.2)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list(out.glob("normal/seed_*/checkpoints/last.pt")), (tmp_path / "log").read_text()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers kept running after their parent was killed"
    states = {RunDir(d).state() for d in out.glob("normal/seed_*")}
    assert "partial" in states and "trained" not in states
    finish = _reproduce_seeds(tmp_path / "grid.yaml", out, 3)
    assert finish.returncode == 0, finish.stderr
    assert {RunDir(d).state() for d in out.glob("normal/seed_*")} == {"trained"}


def _reproduce_seeds(grid, out, seeds):
    args = [sys.executable, "-m", "xaigan", "reproduce", str(grid), "--out", str(out), "--seeds", str(seeds)]
    args += ["--no-eval", "--quiet", "--workers", "2"]
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.mark.slow
def test_a_dead_worker_stops_the_grid_without_starting_queued_runs(tmp_path):
    """One worker SIGKILLed mid-run: the pool SIGTERMs the other, which checkpoints its run and must not take a run
    still queued for it (the pool's shutdown would wait for that whole run); reproduce exits 1 at once."""
    import signal
    import time

    out, args = _long_grid(tmp_path, epochs=200, seeds=6)
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("normal/seed_*/checkpoints/last.pt"))) < 2:
            time.sleep(0.2)
        victim = min(p for p in _children(proc.pid) if "spawn_main" in _cmdline(p))  # a worker
        os.kill(victim, signal.SIGKILL)
        code = proc.wait(timeout=300)
    assert code == 1, (tmp_path / "log").read_text()
    assert "worker process died" in (tmp_path / "log").read_text()
    states = sorted(RunDir(out / "normal" / f"seed_{s}").state() for s in range(6))
    # The 4 queued runs were left for the next invocation, and the survivor's run was checkpointed mid-way, not
    # trained to its end (200 epochs) before the grid stopped.
    assert states == ["new"] * 4 + ["partial"] * 2, states


@pytest.mark.slow
def test_sigterm_stops_the_grid_cleanly_and_resumes(tmp_path):
    """SIGTERM to ``reproduce`` (how a background study is stopped): the workers checkpoint, the command exits 143
    with the interrupted line last and no warning about the workers' leftovers, and the same command finishes."""
    import signal
    import time

    out, args = _long_grid(tmp_path, epochs=60, seeds=3)
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("normal/seed_*/checkpoints/last.pt"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 143 and lines[-1].startswith("xaigan: interrupted"), err
    assert not any("Warning" in line or "leaked" in line for line in lines), err
    finish = _reproduce_seeds(tmp_path / "grid.yaml", out, 3)
    assert finish.returncode == 0, finish.stderr
    assert {RunDir(d).state() for d in out.glob("normal/seed_*")} == {"trained"}
