"""scripts/fid_swing.py: the spread of final FIDs across seeds against each run's swing, on hand-made records."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fid_swing.py"


def _script():
    spec = importlib.util.spec_from_file_location("fid_swing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, curve: list[float], final: float, raw: list[float] | None = None) -> None:
    folder.mkdir(parents=True)
    lines = [{"epoch": 0, "step": 1, "d_loss": 1.0, "g_loss": 1.0}]
    for i, fid in enumerate(curve):
        record = {"epoch": 5 * i + 4, "step": 10 * (i + 1), "fid": fid}
        if raw is not None:
            record["fid_raw"] = raw[i]
        lines.append(record)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "eval.json").write_text(json.dumps({"fid": final}))


def test_swing_against_numpy(tmp_path, capsys):
    curves = [[90.0, 50.0, 60.0, 55.0], [80.0, 40.0, 44.0, 48.0], [70.0, 61.0, 52.0, 58.0]]
    finals = [52.0, 47.0, 57.0]
    raws = [[c + 10 * (i % 2) for i, c in enumerate(curve)] for curve in curves]
    for seed, (curve, final, raw) in enumerate(zip(curves, finals, raws)):
        _run(tmp_path / "rec" / "cell" / f"seed_{seed}", curve, final, raw)
    (tmp_path / "rec" / "cell" / "seed_9").mkdir()  # unfinished: no eval.json, left out
    row = _script().swing(tmp_path / "rec" / "cell")
    assert row["runs"] == 3
    assert row["final_sd"] == pytest.approx(np.std(finals, ddof=1))
    within = math.sqrt(np.mean([np.var(c[-3:], ddof=1) for c in curves]))  # pooled over runs
    assert row["within_sd"] == pytest.approx(within)
    assert row["within_sd_raw"] == pytest.approx(math.sqrt(np.mean([np.var(r[-3:], ddof=1) for r in raws])))
    assert row["corr_final_last"] == pytest.approx(np.corrcoef(finals, [c[-1] for c in curves])[0, 1])
    _script().main([str(tmp_path / "rec")])
    assert f"| rec | cell | 3 | {np.std(finals, ddof=1):.2f} | {within:.2f} |" in capsys.readouterr().out


def test_fewer_than_three_runs_give_no_row(tmp_path):
    for seed in range(2):
        _run(tmp_path / "cell" / f"seed_{seed}", [60.0, 50.0, 55.0], 50.0)
    assert _script().swing(tmp_path / "cell") is None
