"""Reports of experiment grids: markdown and self-contained HTML."""

from xaigan.report.build import build_report, curves, table_rows
from xaigan.report.plots import line_chart

__all__ = ["build_report", "curves", "line_chart", "table_rows"]
