"""Experiment grids over seeds on equal budgets, and their aggregation."""

from xaigan.experiments.aggregate import aggregate
from xaigan.experiments.executors import Executor, PoolExecutor, RayExecutor, SerialExecutor, make_executor
from xaigan.experiments.finish import collect
from xaigan.experiments.grid import EvalSettings, Grid, RunSpec, load_grid
from xaigan.experiments.prepare import prepare_run
from xaigan.experiments.runner import RunsFailedError, run_grid
from xaigan.experiments.statistics import (
    equivalence_test,
    holm,
    mean_ci,
    min_detectable_effect,
    paired_power,
    paired_test,
)

__all__ = [
    "equivalence_test",
    "EvalSettings",
    "Executor",
    "Grid",
    "PoolExecutor",
    "RayExecutor",
    "RunSpec",
    "RunsFailedError",
    "SerialExecutor",
    "aggregate",
    "collect",
    "holm",
    "load_grid",
    "make_executor",
    "mean_ci",
    "min_detectable_effect",
    "paired_power",
    "paired_test",
    "prepare_run",
    "run_grid",
]
