"""Experiment grids over seeds on equal budgets, and their aggregation."""

from xaigan.experiments.aggregate import aggregate, mean_ci, paired_test
from xaigan.experiments.grid import Grid, RunSpec, load_grid
from xaigan.experiments.runner import collect, run_grid, run_state

__all__ = ["Grid", "RunSpec", "aggregate", "collect", "load_grid", "mean_ci", "paired_test", "run_grid", "run_state"]
