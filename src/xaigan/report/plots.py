"""Small self-contained SVG line charts (no plotting dependency): one chart with several named series, or small
multiples (one panel per cell, its baseline in grey beside it), on a linear or a logarithmic y axis, with vertical
markers (where guidance starts)."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
REFERENCE = "#9a9a9a"  # the baseline's lines in small multiples
LOG_PAD = 1.05  # a log axis runs from the lowest value / LOG_PAD to the highest x LOG_PAD


def nice_step(lo: float, hi: float, count: int = 5) -> float:
    """A 1, 2 or 5 x 10^k step that cuts ``[lo, hi]`` into at most about ``count`` parts."""
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= step * mult:
            return step * mult
    return step * 10


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    step = nice_step(lo, hi, count)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log axis over ``[lo, hi]`` (both > 0): 1, 1.5, 2, 3, 4, 5, 6, 8 x 10^k within 0.6 decades, 1, 2, 3,
    5 x 10^k within 1.5, 1, 2, 5 x 10^k within three, powers of ten beyond; linear steps where fewer than two of those
    fall inside (a narrow range)."""
    decades = math.log10(hi / lo)
    mantissas: tuple[float, ...] = (1, 2, 5) if decades <= 3 else (1,)
    if decades <= 0.6:
        mantissas = (1, 1.5, 2, 3, 4, 5, 6, 8)
    elif decades <= 1.5:
        mantissas = (1, 2, 3, 5)
    ks = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**k for k in ks for m in mantissas if lo <= m * 10.0**k <= hi]
    return ticks if len(ticks) >= 2 else _ticks(lo, hi, 4)


def tick_label(t: float) -> str:
    return f"{t:g}" if abs(t) < 1e5 else f"{t:.0e}"


LEGEND_CHAR_PX = 7.0  # a generous width of one character at font-size 11 (DejaVu Sans averages ~6.2)
LEGEND_TEXT_X, LEGEND_FIRST_Y, LEGEND_LINE = 28, 12, 16  # right of the plot: label offset, first line, line height


@dataclass(frozen=True)
class Line:
    points: list[tuple[float, float]]
    colour: str
    dashed: bool = False
    width: float = 1.8


@dataclass(frozen=True)
class Frame:
    """A plot area in the SVG (left, top, width, height) and the data ranges it shows."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool = False

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def sy(self, y: float) -> float:
        f: Callable[[float], float] = math.log10 if self.log_y else float
        return self.top + self.height - (f(y) - f(self.y0)) / (f(self.y1) - f(self.y0)) * self.height


def _clean(points: list[tuple[float, float]], log_y: bool) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]


def ranges(
    lines: list[list[tuple[float, float]]], log_y: bool, markers: Sequence[float] = ()
) -> tuple[float, float, float, float]:
    """x and y ranges of all points (x also holds the markers): x tight, y padded by 5% of its span (linear) or by
    the factor :data:`LOG_PAD` (log)."""
    xs = [x for line in lines for x, _ in line] + list(markers)
    ys = [y for line in lines for _, y in line]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = min(ys), max(ys)
    if log_y:
        return x0, x1, y0 / LOG_PAD, y1 * LOG_PAD
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    return x0, x1, y0 - pad, y1 + pad


def _axes(f: Frame, x_labels: bool = True) -> list[str]:
    parts = [
        f'<rect class="plot" x="{f.left}" y="{f.top}" width="{f.width}" height="{f.height}" fill="none" stroke="#999"/>'
    ]
    for t in log_ticks(f.y0, f.y1) if f.log_y else _ticks(f.y0, f.y1):
        y = f.sy(t)
        parts.append(
            f'<line class="ytick" x1="{f.left}" x2="{f.left + f.width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{f.left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick_label(t)}</text>')
    if x_labels:
        for t in _ticks(f.x0, f.x1):
            parts.append(
                f'<text x="{f.sx(t):.1f}" y="{f.top + f.height + 14}" text-anchor="middle">{tick_label(t)}</text>'
            )
    return parts


HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # a white edge keeps a label legible over lines


def _markers(f: Frame, markers: list[tuple[float, str]]) -> list[str]:
    """Dashed vertical lines at ``x`` with a label at the top, right of the line (left of it near the right edge)."""
    parts = []
    for x, label in markers:
        px = f.sx(x)
        parts.append(
            f'<line class="marker" x1="{px:.1f}" x2="{px:.1f}" y1="{f.top}" y2="{f.top + f.height}" stroke="#555" '
            'stroke-dasharray="4 3"/>'
        )
        if label:
            right = px + 3 + LEGEND_CHAR_PX * len(label) <= f.left + f.width
            tx, anchor = (px + 3, "start") if right else (px - 3, "end")
            parts.append(
                f'<text x="{tx:.1f}" y="{f.top + 11}" text-anchor="{anchor}" font-size="10" fill="#555" {HALO}>'
                f"{html.escape(label)}</text>"
            )
    return parts


def _polyline(f: Frame, line: Line) -> str:
    path = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y in sorted(line.points))
    dash = ' stroke-dasharray="5 3"' if line.dashed else ""
    return f'<polyline fill="none" stroke="{line.colour}" stroke-width="{line.width}"{dash} points="{path}"/>'


def _open(width: float, height: float, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
    ]


def _ylabel(x: float, y: float, text: str) -> str:
    return f'<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})">{html.escape(text)}</text>'


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 520,
    height: int = 300,
    log_y: bool = False,
    markers: Sequence[tuple[float, str]] = (),
) -> str:
    """An SVG chart of ``{name: [(x, y), ...]}``; non-finite points (and, on a log axis, points <= 0) are dropped.
    ``markers``: ``(x, label)`` of dashed vertical lines."""
    clean = {k: _clean(v, log_y) for k, v in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    left, right, top, bottom = 60, 130, 28, 42
    pw, ph = width - left - right, height - top - bottom
    # The legend sits right of the plot, one line per series: the chart grows to hold it instead of cutting it.
    longest = max((len(k) for k in clean), default=0)
    width += max(0, math.ceil(LEGEND_TEXT_X + LEGEND_CHAR_PX * longest + 6) - right)
    height = max(height, top + LEGEND_FIRST_Y + LEGEND_LINE * len(clean) + bottom)
    parts = _open(width, height, title)
    parts.append(f'<text x="{left + pw / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>')
    if not clean:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    f = Frame(left, top, pw, ph, *ranges(list(clean.values()), log_y, [x for x, _ in markers]), log_y=log_y)
    parts += _axes(f)
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(_ylabel(14, top + ph / 2, ylabel + (" (log scale)" if log_y else "")))
    for i, (name, points) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(_polyline(f, Line(points, colour)))
        ly = top + LEGEND_FIRST_Y + i * LEGEND_LINE
        parts.append(
            f'<line x1="{left + pw + 8}" x2="{left + pw + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<text x="{left + pw + LEGEND_TEXT_X}" y="{ly + 4}">{html.escape(name)}</text>')
    parts += _markers(f, list(markers))  # over the lines, so that its label stays legible
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Panel:
    """One cell's panel: its own lines (coloured), its reference's (grey), its markers."""

    title: str
    lines: list[Line]
    markers: list[tuple[float, str]]


PANEL_W, PANEL_H = 300, 190  # one panel, its tick labels and title included
PANEL_LEFT, PANEL_TOP, PANEL_BOTTOM, PANEL_RIGHT = 46, 20, 24, 10


def small_multiples(
    panels: list[Panel],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend: list[tuple[str, str, bool]],
    log_y: bool = False,
) -> str:
    """Panels side by side (two columns up to four panels, three beyond) on shared axes, so that heights compare
    across panels. ``legend``: ``(label, colour, dashed)`` entries shown once under the title."""
    panels = [Panel(p.title, [Line(_clean(ln.points, log_y), ln.colour, ln.dashed, ln.width) for ln in p.lines],
                    p.markers) for p in panels]  # fmt: skip
    lines = [ln.points for p in panels for ln in p.lines if ln.points]
    cols = 1 if len(panels) == 1 else 2 if len(panels) <= 4 else 3
    rows = math.ceil(len(panels) / cols)
    head = 46  # title and legend
    width, height = 30 + cols * PANEL_W, head + rows * PANEL_H + 22
    legend_w = sum(34 + LEGEND_CHAR_PX * len(label) for label, _, _ in legend)
    width = max(width, math.ceil(legend_w + 40))
    parts = _open(width, height, title)
    parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>')
    if not lines:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    lx = (width - legend_w) / 2
    for label, colour, dashed in legend:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<line x1="{lx:.1f}" x2="{lx + 24:.1f}" y1="32" y2="32" stroke="{colour}" stroke-width="2.5"{dash}/>'
        )
        parts.append(f'<text x="{lx + 28:.1f}" y="36">{html.escape(label)}</text>')
        lx += 34 + LEGEND_CHAR_PX * len(label)
    marks = [x for p in panels for x, _ in p.markers]
    x0, x1, y0, y1 = ranges(lines, log_y, marks)
    for i, panel in enumerate(panels):
        ox, oy = 30 + (i % cols) * PANEL_W, head + (i // cols) * PANEL_H
        f = Frame(
            ox + PANEL_LEFT,
            oy + PANEL_TOP,
            PANEL_W - PANEL_LEFT - PANEL_RIGHT,
            PANEL_H - PANEL_TOP - PANEL_BOTTOM,
            x0,
            x1,
            y0,
            y1,
            log_y,
        )
        parts.append('<g class="panel">')
        parts.append(
            f'<text x="{f.left + f.width / 2:.1f}" y="{oy + 14}" text-anchor="middle" font-weight="bold">'
            f"{html.escape(panel.title)}</text>"
        )
        parts += _axes(f)
        parts += [_polyline(f, ln) for ln in panel.lines if ln.points]
        parts += _markers(f, panel.markers)
        parts.append("</g>")
    parts.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(_ylabel(12, head + rows * PANEL_H / 2, ylabel + (" (log scale)" if log_y else "")))
    parts.append("</svg>")
    return "".join(parts)
