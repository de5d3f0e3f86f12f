"""Small self-contained SVG line charts (no plotting dependency): one chart, several named series."""

from __future__ import annotations

import html
import math

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= step * mult:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


LEGEND_CHAR_PX = 7.0  # a generous width of one character at font-size 11 (DejaVu Sans averages ~6.2)
LEGEND_TEXT_X, LEGEND_FIRST_Y, LEGEND_LINE = 28, 12, 16  # right of the plot: label offset, first line, line height


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 520,
    height: int = 300,
) -> str:
    """An SVG chart of ``{name: [(x, y), ...]}``; non-finite points are dropped."""
    clean = {k: [(x, y) for x, y in v if math.isfinite(x) and math.isfinite(y)] for k, v in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    left, right, top, bottom = 60, 130, 28, 42
    pw, ph = width - left - right, height - top - bottom
    # The legend sits right of the plot, one line per series: the chart grows to hold it instead of cutting it.
    longest = max((len(k) for k in clean), default=0)
    width += max(0, math.ceil(LEGEND_TEXT_X + LEGEND_CHAR_PX * longest + 6) - right)
    height = max(height, top + LEGEND_FIRST_Y + LEGEND_LINE * len(clean) + bottom)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{html.escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{left + pw / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
    ]
    if not clean:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    xs = [x for v in clean.values() for x, _ in v]
    ys = [y for v in clean.values() for _, y in v]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{top + ph + 14}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2})">'
        f"{html.escape(ylabel)}</text>"
    )
    for i, (name, points) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(points))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>')
        ly = top + LEGEND_FIRST_Y + i * LEGEND_LINE
        parts.append(
            f'<line x1="{left + pw + 8}" x2="{left + pw + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<text x="{left + pw + LEGEND_TEXT_X}" y="{ly + 4}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
