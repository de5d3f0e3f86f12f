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


def test_workers_must_be_positive(grid, capsys):
    from xaigan import cli

    assert cli.main(["reproduce", str(grid), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
