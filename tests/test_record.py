"""``reproduce --record``: finished runs' small artefacts kept apart (to commit), skipped when recorded, and a report
rebuilt from the record alone."""

from __future__ import annotations

import json
import re
import shutil

import yaml

from tests.conftest import write_image_folder
from xaigan import cli
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
