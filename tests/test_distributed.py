"""One run on several processes (torchrun, gloo on CPU): same numbers as one process, resume across process counts,
and no rank waits for ever when another fails."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_image_folder
from xaigan import cli
from xaigan.cli.run import without_nproc
from xaigan.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "distributed_worker.py"


def _torchrun(n, *args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", str(WORKER), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _losses(run):
    return [(r["step"], r["d_loss"], r["g_loss"]) for r in RunDir(run).read_metrics() if "d_loss" in r]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """Same global batch, seed and noise: per-step global losses and final weights agree to float summation order
    (tolerance 1e-5; the models have no dropout, whose masks each rank draws itself)."""
    for n in (1, 2):
        done = _torchrun(n, str(tmp_path / f"p{n}"))
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = _losses(tmp_path / "p1"), _losses(tmp_path / "p2")
    assert len(one) == len(two) == 3 * 5  # 100 images, global batch 24: 5 steps per epoch
    for a, b in zip(one, two):
        assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], abs=1e-5)
    w1 = torch.load(tmp_path / "p1" / "checkpoints" / "last.pt", weights_only=True)
    w2 = torch.load(tmp_path / "p2" / "checkpoints" / "last.pt", weights_only=True)
    for key in w1["G"]:
        torch.testing.assert_close(w1["G"][key], w2["G"][key], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w1["G_ema"]["weights"][key], w2["G_ema"]["weights"][key], atol=1e-5, rtol=1e-5)
    assert w1["G_ema"]["updates"] == w2["G_ema"]["updates"] == 15
    summary = json.loads((tmp_path / "p2" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 15


@pytest.mark.slow
def test_a_failing_rank_stops_every_process(tmp_path):
    # No rank waits for ever on the one that raised: a hang ends in _torchrun's TimeoutExpired, a failure.
    done = _torchrun(2, str(tmp_path / "run"), "fail", timeout=180)
    assert done.returncode != 0 and "rank 1 fails on purpose" in done.stderr


def _train_args(tmp_path, out, epochs=3):
    return [
        "train",
        "--dataset",
        f"folder:{tmp_path / 'imgs'}",
        "--model",
        "mlp",
        "--batch-size",
        "16",
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "tensorboard=false",
        "--set",
        "checkpoint_every=1",
    ]


def _second_checkpoint_write(tmp_path, monkeypatch):
    """The index of the second checkpoint's write, from a traced uninterrupted run (checkpoints are written in the
    background, so neighbouring writes may swap places; the first checkpoint is complete by then either way)."""
    trace = tmp_path / "trace"
    monkeypatch.setenv("XAIGAN_FAILPOINT", f"trace:{trace}")
    assert cli.main(_train_args(tmp_path, tmp_path / "traced")) == 0
    writes = trace.read_text().splitlines()
    return [i for i, w in enumerate(writes, 1) if w.endswith("last.pt")][1]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_number_of_processes(tmp_path, monkeypatch, first, then):
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    kill_at = _second_checkpoint_write(tmp_path, monkeypatch)
    monkeypatch.setenv("XAIGAN_FAILPOINT", f"kill:{kill_at}:{tmp_path / 'count'}")
    run = tmp_path / "run"
    args = _train_args(tmp_path, run) + ["--nproc", str(first)]
    if first == 1:  # the kill must not take pytest with it
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        code = subprocess.run([sys.executable, "-m", "xaigan", *args], env=env, capture_output=True).returncode
    else:
        code = cli.main(args)
    assert code != 0 and RunDir(run).state() == "partial"
    monkeypatch.delenv("XAIGAN_FAILPOINT")
    assert cli.main(["train", "--resume", str(run), "--quiet", "--nproc", str(then)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 * 4 and summary["processes"] == then
    steps = [s for s, *_ in _losses(run)]
    assert steps == sorted(set(steps))  # steps trained again after the checkpoint replace their first records


@pytest.mark.slow
def test_nproc_flag_is_removed_for_the_processes():
    assert without_nproc(["train", "--nproc", "2", "--quiet"]) == ["train", "--quiet"]
    assert without_nproc(["train", "--nproc=4", "--out", "x"]) == ["train", "--out", "x"]
    assert cli.main(["train", "--nproc", "0"]) == 2


@pytest.mark.slow
def test_evaluation_during_training_gathers_every_ranks_features(tmp_path):
    """Each rank scores its share of the samples; rank 0's FID equals one process scoring the same generator."""
    from xaigan.evaluate import Evaluator, load_generator

    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    run = tmp_path / "run"
    args = _train_args(tmp_path, run, epochs=2) + ["--set", "eval_every=1", "--set", "eval_n=90", "--nproc", "2"]
    assert cli.main(args) == 0
    logged = [r for r in RunDir(run).read_metrics() if "fid" in r]
    assert [r["epoch"] for r in logged] == [0, 1] and logged[-1]["eval_n"] == 90
    G, cfg = load_generator(run)
    evaluator = Evaluator(cfg.dataset, data_dir=cfg.data_dir, reference=cfg.eval_reference, features="domain")
    alone = evaluator.score_generator(G, 90, cfg.noise_dim, seed=0)
    assert logged[-1]["fid"] == pytest.approx(alone["fid"], rel=1e-6)
    assert logged[-1]["recall"] == pytest.approx(alone["recall"])


@pytest.mark.slow
def test_top_k_and_acceptance_weighting_train_on_two_processes(tmp_path):
    """Each process keeps k of its own batch (4 of its 8 samples in the second epoch here); the run trains to its
    end."""
    write_image_folder(tmp_path / "imgs", n=64, size=32, mode="L")
    run = tmp_path / "run"
    args = _train_args(tmp_path, run, epochs=2) + ["--loss", "hinge", "--nproc", "2"]
    args += ["--set", "g_topk=true", "--set", "g_topk_gamma=0.5", "--set", "g_accept_weight=0.3"]
    assert cli.main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2 * 4
    assert all(math.isfinite(loss) for _, _, loss in _losses(run))
