"""Forest plot: each compared cell's paired change in FID, in percent, with its 95% CI as a bar, each seed's paired
difference as a dot, a line at 0 and a dashed line at the paper's claimed change. The answer to "did it help, and by
as much as the paper says?" at a glance."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from xaigan.report.findings import PAPER_GAIN
from xaigan.report.plots import LEGEND_CHAR_PX, nice_step, tick_label

PAPER_CLAIM_PCT = -100.0 * PAPER_GAIN  # the paper's claimed change in FID (%), drawn as a dashed line
CLAIM_LABEL = f"paper's claim {PAPER_CLAIM_PCT:.0f}%".replace("-", "\u2212")
CLIP_PCT = 100.0  # the axis stops at +-100% (FID doubled); what lies beyond is drawn at its edge, pointing out
LOWER, HIGHER, UNSURE = "#1f77b4", "#d62728", "#555555"  # CI below 0, above 0, across it


@dataclass(frozen=True)
class ForestRow:
    """One row: a label, the mean paired change (%), the half-width of its 95% CI (nan: none, as with one seed),
    each seed's paired difference (%), and the text beside the row."""

    label: str
    pct: float
    half: float
    dots: list[float]
    note: str


def _signed(value: float, digits: int = 1) -> str:
    return f"{value:+.{digits}f}".replace("-", "\u2212")


def _row(label: str, test: dict[str, Any]) -> ForestRow:
    n = test.get("n_pairs", 0)
    dots = [d["diff_pct"] for d in test.get("per_seed_pct", [])]
    if not n:
        return ForestRow(label, math.nan, math.nan, [], "no paired seeds")
    pct, half = test["diff_pct"], test["diff_pct_ci95"]
    note = f"{_signed(pct)}%"
    if math.isfinite(half):
        note += f" [{_signed(pct - half)}, {_signed(pct + half)}]"
    note += f", lower in {test['lower_in']}/{n}"
    return ForestRow(label, pct, half, dots, note)


def baseline_rows(rows: list[dict[str, Any]]) -> list[ForestRow]:
    """Each cell compared with a baseline, in the grid's order (named "cell vs baseline" when the grid has several
    baselines)."""
    compared = [r for r in rows if r.get("baseline") is not None]
    several = len({r["baseline"] for r in compared}) > 1
    return [_row(f"{r['cell']} vs {r['baseline']}" if several else r["cell"], r.get("paired") or {}) for r in compared]


def control_rows(rows: list[dict[str, Any]]) -> list[ForestRow]:
    """Each cell against its control (grid ``controls``): the change of the cell's FID from the control's."""
    return [_row(f"{r['control']['of']} vs {r['cell']}", r["control"]) for r in rows if r.get("control")]


ROW_H, BOTTOM, PLOT_W = 30, 64, 380


def domain(values: list[float]) -> tuple[float, float, float]:
    """The x range and its tick step: the values' range cut into at most about five steps of 1, 2 or 5 x 10^k,
    widened out to whole steps."""
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = nice_step(lo, hi)
    return math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, step


def forest_svg(items: list[ForestRow], *, title: str, xlabel: str, claim: float | None = PAPER_CLAIM_PCT) -> str:
    """The forest plot of ``items`` (top to bottom): the x axis spans 0, ``claim`` (None: no claim line), every CI's
    ends and every dot, linearly, up to +-:data:`CLIP_PCT` (one screening cell at +400% would squeeze the others
    into a few pixels): a point beyond is a triangle at the edge, a CI beyond ends in an arrowhead there, a dot beyond
    sits on the edge; the numbers beside each row are the true ones."""
    label_w = math.ceil(LEGEND_CHAR_PX * max((len(r.label) for r in items), default=4)) + 16
    note_w = math.ceil(LEGEND_CHAR_PX * max((len(r.note) for r in items), default=4)) + 16
    left, top = label_w, 30 if claim is None else 50  # room above the plot for the claim's label
    width = left + PLOT_W + note_w
    height = top + ROW_H * max(len(items), 1) + BOTTOM
    values = [0.0] + ([claim] if claim is not None else [])
    for r in items:
        values += [v for v in (r.pct, r.pct - r.half, r.pct + r.half, *r.dots) if math.isfinite(v)]
    clipped = any(abs(v) > CLIP_PCT for v in values)
    lo, hi, step = domain([max(-CLIP_PCT, min(CLIP_PCT, v)) for v in values])

    def sx(v: float) -> float:
        return left + (max(lo, min(hi, v)) - lo) / (hi - lo) * PLOT_W

    def arrow(x: float, y: float, direction: int, colour: str, size: float = 5.0, cls: str = "") -> str:
        """A triangle with its tip at (x, y), pointing right (1) or left (-1)."""
        base = x - direction * size * 1.6
        return (
            f'<polygon{cls} points="{x:.2f},{y:.1f} {base:.2f},{y - size:.1f} {base:.2f},{y + size:.1f}" '
            f'fill="{colour}" data-x="{x:.2f}"/>'
        )

    bottom = top + ROW_H * max(len(items), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
    ]
    for i in range(1, len(items), 2):  # every other row shaded
        parts.append(f'<rect x="0" y="{top + i * ROW_H}" width="{width}" height="{ROW_H}" fill="#f5f5f5"/>')
    parts.append(
        f'<rect class="plot" x="{left}" y="{top}" width="{PLOT_W}" height="{bottom - top}" fill="none" stroke="#999"/>'
    )
    for k in range(round((hi - lo) / step) + 1):
        t = lo + k * step
        parts.append(
            f'<line class="xtick" x1="{sx(t):.2f}" x2="{sx(t):.2f}" y1="{bottom}" y2="{bottom + 4}" stroke="#999"/>'
        )
        label = tick_label(round(t, 10)).replace("-", "\u2212")
        parts.append(f'<text x="{sx(t):.2f}" y="{bottom + 16}" text-anchor="middle">{label}%</text>')
    zero = sx(0.0)
    parts.append(f'<line class="zero" x1="{zero:.2f}" x2="{zero:.2f}" y1="{top}" y2="{bottom}" stroke="#333"/>')
    if claim is not None:
        cx = sx(claim)
        parts.append(
            f'<line class="claim" x1="{cx:.2f}" x2="{cx:.2f}" y1="{top - 6}" y2="{bottom}" stroke="#b8860b" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
        )
        anchor = "start" if cx - LEGEND_CHAR_PX * len(CLAIM_LABEL) / 2 < 4 else "middle"
        parts.append(f'<text x="{cx:.2f}" y="{top - 10}" text-anchor="{anchor}" fill="#8b6508">{CLAIM_LABEL}</text>')
    for i, r in enumerate(items):
        y = top + (i + 0.5) * ROW_H
        parts.append(f'<g class="row" data-label="{html.escape(r.label)}">')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{html.escape(r.label)}</text>')
        parts.append(f'<text x="{left + PLOT_W + 8}" y="{y + 4:.1f}">{html.escape(r.note)}</text>')
        has_ci = math.isfinite(r.half)
        colour = UNSURE
        if has_ci and r.pct + r.half < 0:
            colour = LOWER
        elif has_ci and r.pct - r.half > 0:
            colour = HIGHER
        if has_ci and -CLIP_PCT <= r.pct + r.half and r.pct - r.half <= CLIP_PCT:  # not all off the axis
            a, b = sx(r.pct - r.half), sx(r.pct + r.half)
            parts.append(
                f'<line class="ci" x1="{a:.2f}" x2="{b:.2f}" y1="{y - 3:.1f}" y2="{y - 3:.1f}" stroke="{colour}" '
                'stroke-width="2.5"/>'
            )
            for end, v in ((a, r.pct - r.half), (b, r.pct + r.half)):
                if abs(v) > CLIP_PCT:  # off the axis: an arrowhead at the edge, pointing out
                    parts.append(arrow(end, y - 3, 1 if v > 0 else -1, colour, 4.0))
                else:
                    parts.append(
                        f'<line x1="{end:.2f}" x2="{end:.2f}" y1="{y - 8:.1f}" y2="{y + 2:.1f}" stroke="{colour}"/>'
                    )
        for d in r.dots:
            parts.append(
                f'<circle class="seed" cx="{sx(d):.2f}" cy="{y + 7:.1f}" r="2.4" fill="{colour}" fill-opacity="0.45"/>'
            )
        if math.isfinite(r.pct) and abs(r.pct) > CLIP_PCT:
            parts.append(arrow(sx(r.pct), y - 3, 1 if r.pct > 0 else -1, colour, 6.0, ' class="point clipped"'))
        elif math.isfinite(r.pct):
            parts.append(
                f'<rect class="point" x="{sx(r.pct) - 4.5:.2f}" y="{y - 7.5:.1f}" width="9" height="9" fill="{colour}" '
                f'stroke="#fff" stroke-width="0.8" data-x="{sx(r.pct):.2f}"/>'
            )
        parts.append("</g>")
    parts.append(
        f'<text x="{left}" y="{bottom + 32}" font-size="10" fill="#333">\u2190 lower FID (better)</text>'
        f'<text x="{left + PLOT_W}" y="{bottom + 32}" text-anchor="end" font-size="10" fill="#333">'
        "higher FID (worse) \u2192</text>"
        f'<text x="{left + PLOT_W / 2}" y="{bottom + 32}" text-anchor="middle">{html.escape(xlabel)}</text>'
        f'<text x="{left + PLOT_W / 2}" y="{bottom + 52}" text-anchor="middle" font-size="10" fill="#555">'
        "square: mean paired change; bar: its 95% CI; dots: single seeds"
        + (f"; beyond ±{CLIP_PCT:g}%: at the edge" if clipped else "")
        + "</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def forest_charts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The report's forest plots by file stem: ``forest`` (each cell vs its baseline, with the paper's claim) when
    the grid compares any cell with a baseline, ``forest-controls`` (each cell vs its control) when it has
    controls."""
    charts = {}
    base = baseline_rows(rows)
    if base:
        bases = sorted({r["baseline"] for r in rows if r.get("baseline") is not None})
        charts["forest"] = forest_svg(
            base, title=f"Change in final FID vs {' / '.join(bases)}, paired by seed", xlabel="\u0394FID (%)"
        )
    ctl = control_rows(rows)
    if ctl:
        charts["forest-controls"] = forest_svg(
            ctl, title="Change in final FID vs the cell's control, paired by seed", xlabel="\u0394FID (%)", claim=None
        )
    return charts
