"""Names that become folders (runs, grids, cells, budgets) cannot leave or collide in the output folder, and
``xaigan demo --overwrite`` deletes only what a demo wrote."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import write_image_folder
from xaigan import cli


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "imgs", n=12, size=16, mode="L")
    return tmp_path / "imgs"


@pytest.mark.parametrize("cell", ["../evil", "a/b", ".hidden", "report_files", "grid.json", "a..b", ""])
def test_cell_names_cannot_leave_or_collide_in_the_output_folder(tmp_path, folder, cell, capsys):
    spec = {"name": "g", "base": {"dataset": f"folder:{folder}"}, "cells": {cell: {"xai": "none"}}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["reproduce", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cell" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml", "imgs"]  # nothing written anywhere


@pytest.mark.parametrize("name", ["../up", "/abs", "a/b", "_x/../.."])
def test_run_and_grid_names_cannot_leave_their_folder(tmp_path, folder, name, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--dataset", f"folder:{folder}", "--name", name, "--quiet"]) == 2
    assert "it names a folder" in capsys.readouterr().err
    spec = {"name": name, "base": {"dataset": f"folder:{folder}"}, "cells": {"normal": {}}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["reproduce", str(tmp_path / "grid.yaml")]) == 2
    assert "grid name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml", "imgs"]


def test_demo_overwrite_deletes_only_what_a_demo_wrote(tmp_path, capsys):
    from xaigan.cli.demo import _clear_demo

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert cli.main(["demo", "--out", str(mine), "--overwrite"]) == 2
    assert "not a demo's output" in capsys.readouterr().err and (mine / "thesis.tex").read_text() == "years of work"

    demo = tmp_path / "demo"  # a demo's output, plus a file the user put there
    for part in ("normal/seed_0/checkpoints", "saliency/seed_0", "report_files"):
        (demo / part).mkdir(parents=True)
    for name in ("grid.yaml", "report.md", "report.html", "aggregate.json", "notes.txt"):
        (demo / name).write_text("x")
    (demo / "grid.json").write_text(json.dumps({"name": "demo", "budget": "demo", "seeds": [0]}))
    _clear_demo(demo)
    assert sorted(p.name for p in demo.iterdir()) == ["notes.txt"]
