"""Progress a user can see: lines and ETAs checked by hand, a run's own log, and a grid's workers reporting home."""

from __future__ import annotations

import io

import pytest

from xaigan.experiments import progress as grid_progress
from xaigan.train import progress
from xaigan.train.progress import ProgressMeter, StepProgress, clock


def test_clock_and_remaining_time_by_hand():
    assert clock(None) == "?" and clock(59.4) == "0:59" and clock(61) == "1:01" and clock(3725) == "1:02:05"
    # 300 of 1,000 steps, 200 of them in this process in 50 s: 700 steps left at 0.25 s = 175 s
    p = StepProgress("run", step=300, total=1000, epoch=3, epochs=10, elapsed=50.0, trained_here=200)
    assert p.remaining == pytest.approx(175.0)
    assert p.line() == "run: epoch 4/10, step 300/1000, 0:50 elapsed, ~2:55 left"
    assert StepProgress("run", 0, 10, 0, 1, 0.0, 0).remaining is None


def test_meter_writes_a_line_at_each_interval_where_no_terminal_is(monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    out = io.StringIO()  # not a terminal: lines, no bar
    meter = ProgressMeter("seed_0", total=4, initial=0, epochs=2, stream=out)
    for step in range(1, 5):
        meter.update(step, (step - 1) // 2)
    meter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("seed_0: epoch 2/2, step 4/4, ")


def test_meter_sends_to_a_parent_and_shows_nothing_itself():
    out, sent = io.StringIO(), []
    meter = ProgressMeter("seed_0", total=3, initial=1, epochs=1, sink=sent.append, stream=out)
    meter.update(2, 0)
    meter.close()
    assert out.getvalue() == ""
    assert [p.step for p in sent] == [2, 2] and sent[-1].finished and sent[-1].trained_here == 1


def test_grid_eta_by_hand():
    """Two workers, three runs: a (half done, 100 s left), b (a quarter done, 300 s left), c not started. A run takes
    200 s (a) and 400 s (b) at their rates, so c is expected to take their mean, 300 s. Work left: 100 + 300 + 300 =
    700 s over 2 workers = 350 s, longer than the longest run in flight (300 s)."""
    labels = {"a": "normal seed 0", "b": "saliency seed 0", "c": "normal seed 1"}
    view = grid_progress.GridProgress("grid", labels, workers=2, show=False)
    view.receive("a", StepProgress("a", 500, 1000, 5, 10, elapsed=100.0, trained_here=500))
    view.receive("b", StepProgress("b", 250, 1000, 2, 10, elapsed=100.0, trained_here=250))
    assert view.eta() == pytest.approx(350.0)
    line = view.line()
    assert line.startswith("grid: 0 of 3 runs trained; normal seed 0: epoch 6/10, step 500/1000, ~1:40 left")
    assert line.endswith("grid ~5:50 left")


def test_grid_eta_unknown_until_every_run_in_flight_has_a_rate():
    view = grid_progress.GridProgress("grid", {"a": "a", "b": "b"}, workers=2, show=False)
    assert view.eta() is None
    view.receive("a", StepProgress("a", 0, 100, 0, 1, 0.0, 0))
    assert view.eta() is None
