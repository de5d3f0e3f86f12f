"""Reports of experiment grids: markdown and self-contained HTML."""

from xaigan.report.build import build_report, curves
from xaigan.report.plots import line_chart
from xaigan.report.tables import table_rows

__all__ = ["build_report", "curves", "line_chart", "table_rows"]
