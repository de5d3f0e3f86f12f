"""The report's provenance table, and the findings that say when a grid's cells did not train or score alike."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_report import FIDS, fake_grid_output
from xaigan.report import build_report

CPU = {"type": "cpu", "model": "AMD EPYC 9654 96-Core Processor", "extensions": ["avx2", "avx512f"]}
GPU = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.1}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def provenance(**change) -> dict:
    """A run's provenance as :func:`xaigan.train.provenance.provenance` writes it."""
    return {
        "xaigan": "0.9.0",
        "git": {"commit": COMMIT, "dirty": False},
        "python": "3.12.3",
        "torch": "2.5.1",
        "device": CPU,
        "threads": 1,
        "precision": "fp32",
        **change,
    }


def _edit(run: Path, name: str, change: dict) -> None:
    path = run / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))


def grid_with(tmp_path: Path, changes: dict[tuple[str, int], dict] | None = None) -> Path:
    """The fake grid with every run's provenance recorded, as ``provenance()`` gives it unless ``changes`` (by cell
    and seed: provenance keys to change) says otherwise."""
    out = fake_grid_output(tmp_path / "grid")
    for cell in FIDS:
        for seed in range(3):
            change = (changes or {}).get((cell, seed), {})
            _edit(out / cell / f"seed_{seed}", "summary.json", {"provenance": provenance(**change)})
    return out


def _sections(out: Path) -> tuple[str, str, str]:
    """The built report's findings, its provenance section and its HTML page."""
    md_path, html_path = build_report(out)
    md = md_path.read_text()
    return md.split("## Findings")[1].split("## Results")[0], md.split("## Provenance")[1], html_path.read_text()


def _table(section: str) -> dict[str, list[str]]:
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def test_uniform_provenance_gives_a_table_and_no_warning(tmp_path):
    findings, section, page = _sections(grid_with(tmp_path))
    assert "like-for-like" not in findings and "not recorded" not in findings
    expected = [
        "0.9.0 at 0123456",
        "AMD EPYC 9654 96-Core Processor (avx2, avx512f)",
        "fp32",
        "2.5.1 (Python 3.12.3)",
        "1",
        "domain-test (abc)",
    ]
    assert _table(section) == {cell: expected for cell in FIDS}
    assert '<table id="provenance">' in page and page.count("AMD EPYC 9654 96-Core Processor") == 3


def test_a_grid_on_two_devices_names_each_device_and_its_cells(tmp_path):
    out = grid_with(tmp_path, {("lime", s): {"device": GPU, "threads": 8} for s in range(3)})
    findings, section, _ = _sections(out)
    assert (
        "Not like-for-like: the runs compared trained on different devices: AMD EPYC 9654 96-Core Processor (avx2, "
        "avx512f) for normal, saliency; NVIDIA H100 80GB HBM3 (79.1 GiB) for lime. Their arithmetic differs"
    ) in findings
    assert findings.count("like-for-like") == 1  # threads are in the table, not a finding
    assert _table(section)["lime"][1:5] == ["NVIDIA H100 80GB HBM3 (79.1 GiB)", "fp32", "2.5.1 (Python 3.12.3)", "8"]


def test_a_cell_whose_seeds_differ_lists_each_value_with_its_seeds(tmp_path):
    dirty = {"git": {"commit": "fedcba9876543210", "dirty": True}, "precision": "bf16"}
    findings, section, _ = _sections(grid_with(tmp_path, {("saliency", 2): dirty}))
    code = "0.9.0 at 0123456 (seeds 0, 1); 0.9.0 at fedcba9, uncommitted changes (seed 2)"
    assert _table(section)["saliency"][0] == code
    assert _table(section)["saliency"][2] == "fp32 (seeds 0, 1); bf16 (seed 2)"
    assert (
        "the runs compared trained from different code versions: 0.9.0 at 0123456 for normal, saliency (seeds 0, 1), "
        "lime; 0.9.0 at fedcba9, uncommitted changes for saliency (seed 2)."
    ) in findings
    assert (
        "trained in different precisions: fp32 for normal, saliency (seeds 0, 1), lime; bf16 for saliency (seed 2)."
    ) in findings


def test_runs_scored_by_other_extractor_weights_are_named(tmp_path):
    out = grid_with(tmp_path)
    for cell in FIDS:  # seed 1 of every cell rescored by a retrained extractor
        _edit(out / cell / "seed_1", "eval.json", {"extractor": {"id": "domain-test", "weights_hash": "def"}})
    findings, section, _ = _sections(out)
    assert (
        "were scored by different feature extractor weights: domain-test (abc) for seeds 0, 2 of every cell; "
        "domain-test (def) for seed 1 of every cell."
    ) in findings
    assert _table(section)["lime"][-1] == "domain-test (abc) (seeds 0, 2); domain-test (def) (seed 1)"


def test_runs_without_provenance_say_not_recorded(tmp_path):
    findings, section, _ = _sections(fake_grid_output(tmp_path / "grid"))
    assert "Provenance not recorded for 9 runs (every run of this grid)" in findings
    assert "like-for-like" not in findings
    assert _table(section)["normal"] == ["not recorded"] * 5 + ["domain-test (abc)"]


def test_some_runs_without_provenance_are_counted_and_not_compared(tmp_path):
    out = grid_with(tmp_path)
    for seed in range(3):
        summary = json.loads((out / "lime" / f"seed_{seed}" / "summary.json").read_text())
        del summary["provenance"]
        (out / "lime" / f"seed_{seed}" / "summary.json").write_text(json.dumps({**summary, "device": "cpu"}))
    findings, section, _ = _sections(out)
    assert "Provenance not recorded for 3 runs (of 9: lime)" in findings
    assert "like-for-like" not in findings  # what lime did record (a CPU) agrees with the others
    assert _table(section)["lime"][:2] == ["not recorded", "cpu (model not recorded)"]


def test_older_runs_on_two_kinds_of_device_say_so(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    for cell in FIDS:
        for seed in range(3):
            _edit(out / cell / f"seed_{seed}", "summary.json", {"device": "cuda" if cell == "lime" else "cpu"})
    findings, _, _ = _sections(out)
    kinds = "the runs compared trained on different kinds of device: cpu for normal, saliency; cuda for lime."
    assert kinds in findings


def test_commits_that_leave_the_package_source_alone_are_the_same_code(tmp_path):
    """Runs from two commits with the same source tree (a docs or results commit between them) are like-for-like;
    another source tree is named."""
    same = {"git": {"commit": "fedcba9876543210", "source": "aaaaaaa1", "dirty": False}}
    base = {"git": {"commit": COMMIT, "source": "aaaaaaa1", "dirty": False}}
    runs = {(c, s): base for c in ("normal", "saliency", "lime") for s in range(3)}
    findings, section, _ = _sections(grid_with(tmp_path / "a", {**runs, ("saliency", 2): same}))
    assert "code versions" not in findings and _table(section)["saliency"][0] == "0.9.0 source aaaaaaa"
    other = {"git": {"commit": COMMIT, "source": "bbbbbbb2", "dirty": False}}
    findings, _, _ = _sections(grid_with(tmp_path / "b", {**runs, ("lime", 0): other}))
    named = "0.9.0 source aaaaaaa for normal, saliency, lime (seeds 1, 2); 0.9.0 source bbbbbbb for lime (seed 0)"
    assert f"different code versions: {named}" in findings
