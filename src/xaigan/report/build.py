"""Build ``report.md`` and a self-contained ``report.html`` (images inline) from a grid's output folder."""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from xaigan.errors import MissingFileError
from xaigan.experiments import aggregate, collect, load_grid
from xaigan.experiments.record import evenly_spaced
from xaigan.experiments.selection import apply_rule
from xaigan.io import atomic_write_bytes, atomic_write_text, remove_stale_temps
from xaigan.report.findings import findings
from xaigan.report.forest import forest_charts
from xaigan.report.plots import PALETTE, REFERENCE, Line, Panel, line_chart, small_multiples
from xaigan.report.provenance import PROVENANCE_NOTE, provenance_table
from xaigan.report.reading import load_reading, reading_markdown, reading_section_html
from xaigan.report.tables import (
    EQUIVALENCE_COLUMNS,
    EQUIVALENCE_NOTE,
    LATE_COLUMNS,
    LATE_NOTE,
    OWN_COLUMNS,
    OWN_NOTE,
    data_note,
    equivalence_rows,
    html_table,
    late_rows,
    md_table,
    md_text,
    own_rows,
    results_table,
)
from xaigan.rundir import RunDir

# metrics.jsonl key -> (chart, suffix of the cell's line): G's own FID beside its weight average's (g_ema)
_SERIES = {"fid": ("fid", ""), "fid_raw": ("fid", " (G itself)"), "g_loss": ("g_loss", ""), "d_loss": ("d_loss", "")}


def curves(records: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per chart, per cell: seed-averaged per-epoch series of FID, G loss and D loss (and, for runs that keep a
    weight average of G, G's own FID as a second line)."""
    acc: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for record in records:
        per_epoch: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for m in RunDir(record["run_dir"]).read_metrics():
            for key, line in _SERIES.items():
                if key in m:
                    per_epoch[line][m["epoch"]].append(m[key])
        for (chart, suffix), epochs in per_epoch.items():
            for epoch, values in epochs.items():
                acc[chart][record["cell"] + suffix][epoch].append(float(np.mean(values)))
    return {
        key: {cell: [(e + 1, float(np.mean(v))) for e, v in sorted(ep.items())] for cell, ep in cells.items()}
        for key, cells in acc.items()
    }


RAW = _SERIES["fid_raw"][1]
GUIDANCE = "guidance starts"


def fid_chart(fid: dict[str, list[tuple[float, float]]], rows: list[dict[str, Any]], starts: dict[str, int]) -> str:
    """FID over training on a log axis (it falls ~10x while the cells differ by a few percent at the end): one panel
    per cell, its baseline in grey behind it, G's own FID dashed beside its weight average's, and a dashed line where
    guidance starts (after the epochs done before it). Where every cell ran the same epochs, the panels begin at the
    last evaluation before the earliest guidance start: before it, a cell trains as its baseline does (same seed),
    and the steep first epochs would squeeze the guided ones into a few pixels. One chart of the whole training,
    every cell in it, when no cell has a baseline."""
    title = "FID vs epoch (during training)"
    if not any(r.get("baseline") in fid for r in rows):
        marks = [(m, GUIDANCE) for m in sorted(set(starts.values()))]
        return line_chart(fid, title=title, xlabel="epoch", ylabel="FID", log_y=True, markers=marks)
    bases = {r["baseline"] for r in rows if r.get("baseline")}
    since = min(starts.values(), default=0)
    before = [x for points in fid.values() for x, _ in points if x < since]
    same_epochs = len({(points[0][0], points[-1][0]) for points in fid.values() if points}) == 1
    if before and same_epochs:  # the cells train alike before guidance: show one evaluation of that, then the rest
        lead = max(before)
        fid = {name: [(x, y) for x, y in points if x >= lead] for name, points in fid.items()}
        title += f", from epoch {lead:g}"
    panels = []
    for r in rows:
        cell, base = r["cell"], r.get("baseline")
        if cell not in fid or (base is None and cell in bases):
            continue
        lines = [Line(fid.get(cell + RAW, []), PALETTE[0], True, 1.3), Line(fid[cell], PALETTE[0])]
        if base in fid:
            lines = [Line(fid.get(base + RAW, []), REFERENCE, True, 1.3), Line(fid[base], REFERENCE), *lines]
        marks = [(starts[cell], GUIDANCE)] if cell in starts else []
        panels.append(Panel(f"{cell} vs {base}" if base in fid else cell, lines, marks))
    legend = [("baseline", REFERENCE, False), ("cell", PALETTE[0], False)]
    if any(name.endswith(RAW) for name in fid):
        legend.append(("dashed: G itself, not its weight average", "#555", True))
    return small_multiples(panels, title=title, xlabel="epoch", ylabel="FID", legend=legend, log_y=True)


def collect_images(records: list[dict[str, Any]]) -> dict[str, list[tuple[str, Path]]]:
    """Sample grids (last epoch, first seed of each cell: same fixed noise) and explanation maps over training."""
    first_seed = min((r["seed"] for r in records), default=0)
    samples, heatmaps = [], []
    for r in records:
        if r["seed"] != first_seed:
            continue
        run = RunDir(r["run_dir"])
        grids = run.sample_paths()
        if grids:
            samples.append((f"{r['cell']} (seed {first_seed}, {grids[-1].stem.replace('_', ' ')})", grids[-1]))
        for path in evenly_spaced(run.explanation_paths(), 3):
            heatmaps.append((f"{r['cell']}: {path.stem.replace('_', ' ')}", path))
    return {"samples": samples, "explanations": heatmaps}


def _asset_name(path: Path) -> str:
    """The name in ``report_files/`` of a run's image ``CELL/seed_N/KIND/epoch_NNNN.png``."""
    return f"{path.parent.parent.parent.name}_{path.parent.parent.name}_{path.parent.name}_{path.name}"


GLANCE = "Change in FID at a glance"


def glance_note(forests: dict[str, str]) -> str:
    """The sentence above the forest plots."""
    against = "its baseline's" + (" (second plot: its control's)" if "forest-controls" in forests else "")
    return (
        f"Each cell's final FID against {against} on the same seeds, in percent of the baseline's mean: left of 0 is "
        "better. The dashed line marks the paper's claim."
    )


def _markdown(
    title: str,
    rows: list[dict[str, Any]],
    charts: dict[str, str],
    forests: dict[str, str],
    images: dict[str, list[tuple[str, Path]]],
    notes: list[str],
    selection: dict[str, Any] | None = None,
    preface: list[str] | None = None,
) -> str:
    lines = [f"# {title}", ""] + (preface or [])
    if forests:
        lines += [f"## {GLANCE}", "", glance_note(forests), ""]
        lines += [line for n in forests for line in (f"![{n}](report_files/{n}.svg)", "")]
    lines += ["## Findings", ""]
    lines += [f"- {md_text(f)}" for f in findings(rows, selection)] + ["", "## Results", ""]
    lines += [f"- {md_text(n)}" for n in notes] + [""]
    lines += md_table(*results_table(rows))
    late = late_rows(rows)
    if late:
        lines += ["", "## Late FID (robustness check)", "", LATE_NOTE, ""] + md_table(LATE_COLUMNS, late)
    own = own_rows(rows)
    if own:
        lines += ["", "## G itself (not its weight average)", "", OWN_NOTE, ""] + md_table(OWN_COLUMNS, own)
    same = equivalence_rows(rows)
    if same:
        lines += ["", "## Equivalence (registered margins)", "", EQUIVALENCE_NOTE, ""]
        lines += md_table(EQUIVALENCE_COLUMNS, same)
    lines += ["", "## Curves", ""]
    lines += [f"![{name}](report_files/{name}.svg)" for name in charts]
    for section, items in images.items():
        if items:
            lines += ["", f"## {'Samples (same fixed noise)' if section == 'samples' else 'Explanation maps'}", ""]
            lines += [
                f"**{html.escape(label)}**<br>![{label}](report_files/{_asset_name(path)})" for label, path in items
            ]
    columns, table = provenance_table(rows)
    if table:
        lines += ["", "## Provenance", "", PROVENANCE_NOTE, ""] + md_table(columns, table)
    return "\n".join(lines) + "\n"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _html(
    title: str,
    rows: list[dict[str, Any]],
    charts: dict[str, str],
    forests: dict[str, str],
    images: dict[str, list[tuple[str, Path]]],
    notes: list[str],
    selection: dict[str, Any] | None = None,
    preface: str = "",
) -> str:
    late = late_rows(rows)
    late_html = ""
    if late:
        late_html = f"<h2>Late FID (robustness check)</h2><p>{html.escape(LATE_NOTE)}</p>"
        late_html += html_table("late", LATE_COLUMNS, late)
    own = own_rows(rows)
    if own:
        late_html += f"<h2>G itself (not its weight average)</h2><p>{html.escape(OWN_NOTE)}</p>"
        late_html += html_table("g-itself", OWN_COLUMNS, own)
    same = equivalence_rows(rows)
    if same:
        late_html += f"<h2>Equivalence (registered margins)</h2><p>{html.escape(EQUIVALENCE_NOTE)}</p>"
        late_html += html_table("equivalence", EQUIVALENCE_COLUMNS, same)
    columns, table = provenance_table(rows)
    provenance_html = ""
    if table:
        provenance_html = f"<h2>Provenance</h2><p>{html.escape(PROVENANCE_NOTE)}</p>"
        provenance_html += html_table("provenance", columns, table)
    figures = []
    for section, items in images.items():
        if not items:
            continue
        name = "Samples (same fixed noise)" if section == "samples" else "Explanation maps (samples | heat-maps)"
        figs = "".join(
            f'<figure><img src="{_data_uri(p)}" alt="{html.escape(label)}" class="pix"><figcaption>'
            f"{html.escape(label)}</figcaption></figure>"
            for label, p in items
        )
        figures.append(f'<h2>{name}</h2><div class="grid" id="{section}">{figs}</div>')
    glance = ""
    if forests:
        glance = f'<h2>{GLANCE}</h2><p>{html.escape(glance_note(forests))}</p><div class="grid" id="forest">'
        glance += "".join(forests.values()) + "</div>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; font-weight: bold; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; }}
.pix {{ image-rendering: pixelated; width: 280px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{preface}
{glance}
<h2>Findings</h2><ul id="findings">{"".join(f"<li>{html.escape(f)}</li>" for f in findings(rows, selection))}</ul>
<h2>Results</h2><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in notes)}</ul>
{html_table("results", *results_table(rows))}
{late_html}
<h2>Curves</h2><div class="grid" id="curves">{"".join(charts.values())}</div>
{"".join(figures)}
{provenance_html}
</body></html>
"""


def export_markdown(md_path: Path, target: Path) -> Path:
    """Write ``report.md`` to ``target`` with its images copied beside it into ``TARGET-STEM_files/`` (a record's
    ``report_files/`` is rebuilt, not committed; the exported report must stand alone). Returns the images' folder."""
    target = Path(target)
    files = target.parent / f"{target.stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    for image in sorted((Path(md_path).parent / "report_files").iterdir()):
        atomic_write_bytes(files / image.name, image.read_bytes())
    atomic_write_text(target, Path(md_path).read_text().replace("](report_files/", f"]({files.name}/"))
    return files


def _mixed_weights_note(rows: list[dict[str, Any]]) -> str:
    """Which seeds of which cells each extractor's weights scored, when several did."""
    by_weights: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        for w, seeds in r.get("seeds_by_weights", {}).items():
            by_weights.setdefault(w, {})[r["cell"]] = seeds
    parts = []
    for w, cells in by_weights.items():
        seed_sets = {tuple(s) for s in cells.values()}
        if len(cells) == len(rows) and len(seed_sets) == 1:
            parts.append(f"{w}: seeds {list(seed_sets.pop())} of every cell")
        else:
            parts.append(f"{w}: " + ", ".join(f"{cell} {seeds}" for cell, seeds in cells.items()))
    return (
        "scored by several trainings of the same extractor (" + "; ".join(parts) + "). Each seed is paired only "
        "with the baseline's same seed scored by the same weights, and only such pairs enter ΔFID and the tests; a "
        "cell's mean FID, KID and k-NN scores average over its runs whatever scored them."
    )


def build_report(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``report_files/``) and ``report.html`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    if not (out_dir / "grid.yaml").is_file() or not (out_dir / "grid.json").is_file():
        raise MissingFileError(f"{out_dir} is not a grid output folder (needs grid.yaml and grid.json)")
    remove_stale_temps(out_dir, recursive=False)
    remove_stale_temps(out_dir / "report_files")
    grid = load_grid(out_dir / "grid.yaml")
    meta = json.loads((out_dir / "grid.json").read_text())
    specs = grid.runs(out_dir, meta["budget"], meta["seeds"])
    records = [collect(s) for s in specs if RunDir(s.run_dir).summary_path.is_file()]
    if not records:
        raise MissingFileError(f"{out_dir} holds no finished runs yet")
    rows = aggregate(grid, records)
    selection = apply_rule(rows, grid.select, len(meta["seeds"])) if grid.select else None
    series = curves(records)
    titles = {
        "fid": ("FID vs epoch (during training)", "FID"),
        "g_loss": ("G loss", "loss"),
        "d_loss": ("D loss", "loss"),
    }
    starts = {s.cell: s.cfg.xai_start_epoch for s in specs if s.cfg.xai != "none"}
    marks = [(m, GUIDANCE) for m in sorted(set(starts.values()))]
    charts = {
        key: fid_chart(series[key], rows, starts)
        if key == "fid"
        else line_chart(series[key], title=t, xlabel="epoch", ylabel=y, markers=marks)
        for key, (t, y) in titles.items()
        if key in series
    }
    forests = forest_charts(rows)
    images = collect_images(records)
    extractors = {r["eval"]["extractor"]["weights_hash"]: r["eval"]["extractor"] for r in records if r["eval"]}

    def describe(e: dict[str, Any]) -> str:
        acc = f", held-out accuracy {e['accuracy']:.4f}" if "accuracy" in e else ""
        return f"{e.get('id', '?')} (weights {e.get('weights_hash', '?')}{acc})"

    notes = [
        f"grid {grid.name} ({grid.path.name}), budget {meta['budget']}, seeds {meta['seeds']}; "
        f"{len(records)} finished runs",
        *filter(None, [data_note(rows)]),
        "features: " + ("; ".join(describe(e) for e in extractors.values()) or "none (no run evaluated)"),
        "step time: the median over seeds of each seed's ratio of step times (cell / baseline, same seed), then "
        "the cell's seconds per step; a run's step time is the median of its logged steps, taken separately over its "
        "plain and its guided steps and weighted by their numbers (guidance from mid-run makes two modes, and the "
        "median of both falls anywhere between them). Guided steps: the cell's guided steps against the baseline's "
        "steps in the same epochs, the same way. A run whose mean step time exceeds its median by 1.5x in either "
        "phase is flagged as contaminated (it shared the machine or stalled).",
        "ΔFID is the mean of the per-seed FID differences against the baseline cell (same data and augmentation, "
        "same seeds), relative to the baseline's mean on those seeds, ± the half-width of its 95% t interval. The "
        "paired t-test and Wilcoxon signed-rank test are two-sided; Holm corrects the t-tests for the grid's number "
        "of comparisons. Detectable Δ: the true change the design (these seeds, this spread of differences) detects "
        "with 80% power at 0.05.",
    ]
    if len(extractors) > 1:
        notes.append(_mixed_weights_note(rows))
    if any(r.get("original") for r in rows):
        notes.append(
            "* original repo FID: single unseeded runs from the original authors' results files, computed with "
            "another extractor (Inception / their MNIST setup): not comparable in absolute value."
        )
    averaged = {s.cell: s.cfg.g_ema for s in specs if s.cfg.g_ema > 0}
    if averaged:
        notes.append(
            "scored and sampled through a moving average of G's weights (g_ema; training unchanged): "
            + ", ".join(f"{cell} ({decay})" for cell, decay in averaged.items())
            + ("; the other cells: G itself." if len(averaged) < len(grid.cells) else ".")
        )
    notes += [f"FAILED: {f['cell']} seed {f['seed']}: {f['error']}" for f in meta.get("failed", [])]
    title = f"xaigan results: {grid.name}"
    files = out_dir / "report_files"
    files.mkdir(exist_ok=True)
    for name, svg in {**charts, **forests}.items():
        atomic_write_text(files / f"{name}.svg", svg)
    for items in images.values():
        for _, path in items:
            atomic_write_bytes(files / _asset_name(path), path.read_bytes())
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    reading = load_reading(out_dir)  # a person's plain-words reading of the study, kept in its record
    md = _markdown(title, rows, charts, forests, images, notes, selection, reading_markdown(reading, len(records)))
    atomic_write_text(md_path, md)
    page = _html(title, rows, charts, forests, images, notes, selection, reading_section_html(reading, len(records)))
    atomic_write_text(html_path, page)
    atomic_write_text(out_dir / "aggregate.json", json.dumps(rows, indent=2, default=str))
    if selection is not None:
        atomic_write_text(out_dir / "selection.json", json.dumps(selection, indent=2))
    return md_path, html_path
