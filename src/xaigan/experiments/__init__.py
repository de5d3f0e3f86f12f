"""Experiment grids over seeds on equal budgets, and their aggregation."""

from xaigan.experiments.aggregate import aggregate, mean_ci, paired_test
from xaigan.experiments.grid import Grid, RunSpec, load_grid
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.runner import collect, run_grid

__all__ = ["Grid", "RunSpec", "aggregate", "collect", "load_grid", "mean_ci", "paired_test", "prepare_run", "run_grid"]
