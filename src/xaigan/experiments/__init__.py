"""Experiment grids over seeds on equal budgets, and their aggregation."""

from xaigan.experiments.aggregate import aggregate
from xaigan.experiments.grid import Grid, RunSpec, load_grid
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.runner import collect, run_grid
from xaigan.experiments.statistics import holm, mean_ci, min_detectable_effect, paired_power, paired_test

__all__ = [
    "Grid",
    "RunSpec",
    "aggregate",
    "collect",
    "holm",
    "load_grid",
    "mean_ci",
    "min_detectable_effect",
    "paired_power",
    "paired_test",
    "prepare_run",
    "run_grid",
]
