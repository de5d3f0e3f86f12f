"""Acceptance of the README's main job: ``xaigan demo`` at its default budget gives recognisable digits.

Judged by a digit classifier trained here on real digits, independent of xaigan's metrics: it must be confident
(max softmax >= 0.9) on most generated samples of both runs, and those must cover all 10 classes. The demo takes
minutes, so this runs only with ``XAIGAN_DEMO_TEST=1`` (``.ci/run`` sets it after the main suite).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaigan import cli
from xaigan import data as data_mod
from xaigan.cli.demo import cadence
from xaigan.evaluate import generate_uint8, load_generator

full_demo = pytest.mark.skipif(os.environ.get("XAIGAN_DEMO_TEST") != "1", reason="set XAIGAN_DEMO_TEST=1")


def test_plan_fits_training_and_evaluation_into_the_budget(monkeypatch):
    """The epochs follow from the measured step and evaluation times by hand: 480 s budget, 20% kept free, 10 s of
    worker start, 5 s of report, 40 s of evaluation per run (two runs side by side), 20 s spent so far:
    room = 384 - 10 - 5 - 40 - 20 = 309 s; the slower cell's 0.05 s x 79 steps = 3.95 s an epoch -> 78 epochs."""
    from xaigan.config import Config
    from xaigan.experiments import budget

    monkeypatch.setattr(budget, "cell_step_seconds", lambda cfg: (0.05 if cfg.xai != "none" else 0.04, 79))
    monkeypatch.setattr(budget, "evaluation_seconds", lambda cfg, final_n, evals, threads=1: 40.0)
    cfgs = {"normal": Config(dataset="mnist"), "saliency": Config(dataset="mnist", xai="saliency")}
    started = time.perf_counter() - 20.0
    plan = budget.plan_by_time(cfgs, 480.0, started, final_n=5000, evals=4, workers=2)
    assert plan.epochs == 78 and plan.steps == 78 * 79
    assert plan.step_s == {"normal": 0.04, "saliency": 0.05}
    assert plan.estimate_s == pytest.approx(20 + 10 + 5 + 40 + 78 * 79 * 0.05, abs=0.5)
    assert plan.estimate_s <= plan.budget_s
    # one worker for two runs: they train one after the other, so each gets half the epochs (rounded down)
    one = budget.plan_by_time(cfgs, 480.0, started, final_n=5000, evals=4, workers=1)
    assert one.epochs == 34  # (384 - 10 - 5 - 80 - 20) / 2 / 3.95 = 34.1


def test_cadence_spreads_evaluations_samples_and_checkpoints():
    assert cadence(96) == {"epochs": 96, "eval_every": 24, "sample_every": 5, "checkpoint_every": 24}
    assert cadence(1) == {"epochs": 1, "eval_every": 1, "sample_every": 1, "checkpoint_every": 1}


def test_slow_machine_is_told_before_training(tmp_path, capsys, monkeypatch):
    """Where the budget allows fewer steps than recognisable digits need, the demo says so, with its estimate."""
    from xaigan.cli import demo
    from xaigan.experiments import budget

    slow = budget.TimePlan(epochs=10, steps=790, step_s={"normal": 0.3, "saliency": 0.3}, eval_s=60.0,
                           estimate_s=470.0, budget_s=480.0, spent_s=20.0)  # fmt: skip
    monkeypatch.setattr(budget, "plan_by_time", lambda *a, **k: slow)
    chosen = demo._plan(json.loads(json.dumps(demo.DEMO_GRID)), tmp_path, 0, 8.0, time.perf_counter())
    printed = capsys.readouterr().out
    assert chosen["epochs"] == 10 and "790 steps" in printed and "too slow" in printed
    # 4,000 steps at 0.3 s: (470 + (4000 - 790) * 0.3) / 60 = 23.9 minutes
    assert "~24 minutes here" in printed and "--minutes 24" in printed
    assert json.loads((tmp_path / "plan.json").read_text())["steps"] == 790


def test_bad_budget_is_one_error_before_anything_is_written(tmp_path, capsys):
    for flags in (["--epochs", "0"], ["--minutes", "0"], ["--minutes", "-3"]):
        assert cli.main(["demo", "--out", str(tmp_path / "demo"), *flags]) == 2
        assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_short_demo_reports_findings_and_points_to_the_committed_answer(tmp_path, capsys):
    """The demo's path end to end at 2 epochs: table, plain findings, report, samples side by side, each run's log,
    and the page with what many seeds found."""
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| normal |" in out and "| saliency |" in out and "confident" in out
    assert "The dataset's own classifier recognises" in out and "seed" in out
    assert "docs/findings.md" in out and (Path(__file__).resolve().parent.parent / "docs" / "findings.md").is_file()
    assert (tmp_path / "demo" / "report.html").is_file()
    evals = [json.loads((tmp_path / "demo" / c / "seed_0" / "eval.json").read_text()) for c in ("normal", "saliency")]
    assert all(0 <= e["confident"] <= 1 and 0 <= e["classes_covered"] <= 10 for e in evals)
    for cell in ("normal", "saliency"):  # trained in worker processes, each run keeps its own log
        log = (tmp_path / "demo" / cell / "seed_0" / "train.log").read_text()
        assert "epoch 1: FID" in log and "step 158/158" in log and "(finished)" in log
    assert (tmp_path / "demo" / "samples.png").is_file() and "samples:" in out


def _digit_classifier(images: torch.Tensor, labels: torch.Tensor) -> tuple[nn.Module, float]:
    """A LeNet-style CNN on 32x32 digits in [-1, 1]; returns it and its accuracy on 1,000 held-out digits."""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=g)
    held, train = order[:1000], order[1000:]
    x = images.float() / 127.5 - 1
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(6):
        net.train()
        for batch in torch.randperm(len(train), generator=g).split(64):
            idx = train[batch]
            shift = torch.randint(-2, 3, (2,), generator=g).tolist()  # small shifts: generated digits are not centred
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(xb), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x[held]).argmax(1) == labels[held]).float().mean())
    return net, accuracy


# The step count a machine 3x slower than an AMX one affords within the 8-minute budget, trained on any machine: the
# paper MLP's one-thread step takes 0.055 s with AMX, 0.17 s on the slowest CPU we met (an AVX2-only AMD EPYC) and
# 0.099 s on the machine where the demo's 8-minute plan chose 7,505 steps per run; 7,505 / (0.17 / 0.099) = 4,364
# steps, rounded down to 55 epochs of 79 (docs/demo.md, "Acceptance").
SLOW_MACHINE_EPOCHS = 55


@full_demo
@pytest.mark.parametrize("budget", ["time", "slow-machine"])
def test_demo_samples_are_recognisable_digits(tmp_path, capsys, budget):
    """At its time budget on this machine, and at the steps the slowest CPU we know affords in that budget, both
    runs' samples are digits the independent judge is sure of (>= 90% confident on >= 50%, all 10 classes)."""
    start = time.perf_counter()
    flags = [] if budget == "time" else ["--epochs", str(SLOW_MACHINE_EPOCHS)]
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet", *flags]) == 0
    minutes = (time.perf_counter() - start) / 60
    printed = capsys.readouterr().out
    assert "docs/findings.md" in printed and "report" in printed
    plan = tmp_path / "demo" / "plan.json"
    if plan.is_file():  # measured and chosen, against what it took (docs/demo.md records both)
        chosen = json.loads(plan.read_text())
        print(f"plan: {chosen['steps']} steps, estimated {chosen['estimate_s'] / 60:.1f} min; took {minutes:.1f} min")
    real = data_mod.load("mnist", split="all", download=False)
    net, accuracy = _digit_classifier(real.images, real.labels.long())
    assert accuracy >= 0.95, f"the judging classifier is too weak ({accuracy:.3f})"
    for cell in ("normal", "saliency"):
        G, cfg = load_generator(tmp_path / "demo" / cell / "seed_0")
        fake = generate_uint8(G, 1000, cfg.noise_dim, seed=123).float() / 127.5 - 1
        with torch.no_grad():
            probs = net(fake).softmax(1)
        confident = probs.max(1).values >= 0.9
        classes = set(probs.argmax(1)[confident].tolist())
        print(
            f"{budget} {cell}: {confident.float().mean():.3f} confident, classes {sorted(classes)}, {minutes:.1f} min"
        )
        assert confident.float().mean() >= 0.5, f"{cell}: only {confident.float().mean():.3f} recognisable"
        assert classes == set(range(10)), f"{cell}: classes {sorted(classes)}"
