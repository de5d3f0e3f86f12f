"""The screening grid's selection rule (docs/variants.md), checked on hand-built rows and through the report."""

import json

import pytest
import yaml

from tests.test_report import fake_grid_output
from xaigan.config import ConfigError
from xaigan.experiments import load_grid
from xaigan.experiments.selection import SelectionRule, apply_rule
from xaigan.report import build_report


def row(cell, change, lower, n=3, baseline="normal"):
    return {"cell": cell, "baseline": baseline, "paired": {"n_pairs": n, "lower_in": lower, "diff_pct": change}}


BASE = {"cell": "normal", "baseline": None, "paired": None}


def test_rule_selects_the_largest_qualified_improvements():
    rows = [
        BASE,
        row("a", -8.0, 2),
        row("b", -12.0, 3),
        row("c", -30.0, 1),  # large mean change from one seed: does not qualify
        row("d", -20.0, 2),
        row("e", -5.0, 2),  # on the boundary: qualifies, but a fourth
        row("f", 7.0, 0),
        row("g", 7.0, 1),
        row("h", 4.0, 0),
    ]
    sel = apply_rule(rows, SelectionRule(), 3)
    assert sel["qualified"] == ["d", "b", "a", "e"]
    assert sel["selected"] == ["d", "b", "a"] and not sel["fallback"] and sel["pending"] == []
    assert sel["hurts"] == ["f"]
    assert [c["cell"] for c in sel["ranking"]] == ["c", "d", "b", "a", "e", "h", "f", "g"]
    assert "normal" not in [c["cell"] for c in sel["ranking"]]


def test_rule_falls_back_to_the_best_when_none_qualifies():
    rows = [BASE, row("a", -4.0, 3), row("b", -9.0, 1), row("c", 1.0, 2)]
    sel = apply_rule(rows, SelectionRule(), 3)
    assert sel["qualified"] == [] and sel["fallback"]
    assert sel["selected"] == ["b", "a"]
    assert apply_rule(rows, SelectionRule(fallback=1), 3)["selected"] == ["b"]


def test_rule_waits_for_every_seed():
    rows = [BASE, row("a", -20.0, 3), row("b", -10.0, 2, n=2)]
    sel = apply_rule(rows, SelectionRule(), 3)
    assert sel["pending"] == ["b"] and sel["selected"] == []
    assert sel["qualified"] == ["a", "b"]  # provisional, shown but not selected


def test_rule_waits_for_a_cell_with_no_finished_run():
    """A cell none of whose runs finished (all failed, say) has no pairs at all: still pending, not left out."""
    rows = [BASE, row("a", -20.0, 3), {"cell": "b", "baseline": "normal", "paired": None}]
    sel = apply_rule(rows, SelectionRule(), 3)
    assert sel["pending"] == ["b"] and sel["selected"] == []


def test_grid_file_takes_a_select_rule(tmp_path):
    spec = {"name": "g", "cells": {"normal": {"xai": "none"}}, "select": {"max_change_pct": -10, "top": 1}}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert load_grid(path).select == SelectionRule(max_change_pct=-10, top=1)
    del spec["select"]
    path.write_text(yaml.safe_dump(spec))
    assert load_grid(path).select is None


@pytest.mark.parametrize(
    "select, message",
    [
        ({"max_change": -5}, "unknown select key"),
        ({"top": 1.5}, "select top must be an integer"),
        ({"top": True}, "select top must be an integer"),
        ({"hurt_pct": "5"}, "select hurt_pct must be a number"),
        ({"min_lower": -1}, "select min_lower must be >= 0"),
        ([1, 2], "'select' must be a mapping"),
    ],
)
def test_grid_file_refuses_a_bad_select_rule(tmp_path, select, message):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "cells": {"normal": {"xai": "none"}}, "select": select}))
    with pytest.raises(ConfigError, match=message):
        load_grid(path)


def test_report_applies_the_grid_files_rule(tmp_path):
    out = fake_grid_output(tmp_path / "grid")  # saliency -2.4% (lower in 3/3), lime +9.7% (higher in 3/3)
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["select"] = {"max_change_pct": -5, "min_lower": 2, "top": 3, "fallback": 1}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec))
    md_path, html_path = build_report(out)
    sel = json.loads((out / "selection.json").read_text())
    assert sel["selected"] == ["saliency"] and sel["fallback"] and sel["hurts"] == ["lime"]
    findings = md_path.read_text().split("## Findings")[1].split("## Results")[0]
    assert "None qualifies; the 1 best go on anyway: saliency" in findings
    assert "saliency -2.4% (3/3), lime +9.7% (0/3)" in findings
    assert "Hurt (at least +5% and worse in every seed): lime" in findings
    assert "None qualifies" in html_path.read_text()


def test_report_compares_each_control_with_the_cell_it_controls(tmp_path):
    """A grid's ``controls`` (control cell -> cell): the cell against its control on the same seeds, as its own
    Holm family, checked against scipy's paired t-test on the fake grid's FIDs."""
    from scipy import stats

    from tests.test_report import FIDS

    out = fake_grid_output(tmp_path / "grid")
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["controls"] = {"lime": "saliency"}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec))
    md_path, _ = build_report(out)
    findings = md_path.read_text().split("## Findings")[1].split("## Results")[0]
    p = stats.ttest_rel(FIDS["saliency"], FIDS["lime"]).pvalue
    diffs = [a - b for a, b in zip(FIDS["saliency"], FIDS["lime"])]
    pct = 100 * abs(sum(diffs) / 3) / (sum(FIDS["lime"]) / 3)
    expected = (
        f"saliency vs its control lime: {pct:.1f}% lower FID over 3 paired seeds; "
        f"95% CI -"  # the interval's text is checked by the baseline findings' tests
    )
    assert expected in findings
    assert f"paired t-test p = {p:.3g}, Holm-adjusted over the grid's controls {p:.3g}; lower FID in 3 of 3" in findings
    assert ("Significant: saliency does better than its control (lime)." in findings) == (p < 0.05)
    spec["controls"] = {"lime": "lime"}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="must name two different cells"):
        load_grid(out / "grid.yaml")
