"""A grid's epochs chosen by time: measure this machine's step, then fit training and evaluation into a budget.

The demo promises to end within a stated time on any machine. A fixed number of epochs cannot keep that promise
(the same step takes three times as long on one CPU as on another, docs/demo.md), so the epochs are chosen here,
before training, from the step time measured in this process and the evaluation time measured on the same machine.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from xaigan import models
from xaigan.config import Config
from xaigan.evaluate import Evaluator
from xaigan.experiments.workers import threads_per_worker
from xaigan.process import fixed_threads
from xaigan.train.timing import time_step

WORKER_START_S = 10.0  # spawning a worker, importing torch, loading the data and building the nets
REPORT_S = 5.0  # aggregation and the report
MARGIN = 0.20  # of the budget, kept free: steps ran up to ~20-25% slower over minutes than measured (docs/demo.md)


@dataclass(frozen=True)
class TimePlan:
    """How a grid's runs fit a time budget.

    Attributes:
        epochs: epochs each run trains.
        steps: steps each run trains (``epochs`` times the steps of an epoch).
        step_s: measured seconds per step of each cell (a guided cell: its mix of plain and guided steps).
        eval_s: estimated seconds of evaluation per run (in training and final).
        estimate_s: the whole job's estimated seconds, from its start.
        budget_s: the budget.
        spent_s: seconds spent before training (start-up and this measurement).
    """

    epochs: int
    steps: int
    step_s: dict[str, float]
    eval_s: float
    estimate_s: float
    budget_s: float
    spent_s: float

    def minutes_for(self, steps: int) -> float:
        """The job's estimated minutes if each run trained ``steps`` steps."""
        return (self.estimate_s + (steps - self.steps) * max(self.step_s.values())) / 60

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "steps": self.steps,
            "step_s": {k: round(v, 5) for k, v in self.step_s.items()},
            "eval_s": round(self.eval_s, 1),
            "estimate_s": round(self.estimate_s, 1),
            "budget_s": self.budget_s,
            "spent_s": round(self.spent_s, 1),
        }


def cell_step_seconds(cfg: Config, seconds: float = 3.0) -> tuple[float, int]:
    """A run's mean seconds per step (plain before ``xai_start``, guided after it, each timed for ``seconds``) and
    the steps of one of its epochs. A cell without guidance times its plain step twice, so that cells measured side
    by side keep each other company for as long."""
    plain = time_step(cfg, seconds=seconds)
    if cfg.xai == "none":
        again = time_step(cfg, seconds=seconds)
        return min(plain.seconds, again.seconds), plain.steps_per_epoch
    guided = time_step(cfg, guided=True, seconds=seconds).seconds
    return cfg.xai_start * plain.seconds + (1 - cfg.xai_start) * guided, plain.steps_per_epoch


def evaluation_seconds(cfg: Config, final_n: int, evals: int, threads: int = 1) -> float:
    """Estimated seconds of one run's evaluations: ``evals`` in training (``eval_n`` samples, the weight average
    and G itself) and a final one of ``final_n`` samples, from one timed scoring of ``eval_n`` samples here. Builds
    the reference statistics first (they are cached, so the runs' own evaluations reuse them)."""
    with fixed_threads(threads):
        evaluator = Evaluator(
            cfg.dataset, data_dir=cfg.data_dir, reference=cfg.eval_reference, features=cfg.eval_features
        )
        G, _ = models.build(cfg.model, evaluator.reference.channels, evaluator.reference.image_size, cfg.noise_dim)
        t0 = time.perf_counter()
        evaluator.score_generator(G.eval(), cfg.eval_n, cfg.noise_dim, seed=0)
        per_sample = (time.perf_counter() - t0) / cfg.eval_n
    in_training = evals * cfg.eval_n * (2 if cfg.g_ema > 0 else 1)
    return per_sample * (in_training + final_n)


def plan_by_time(
    cfgs: dict[str, Config],
    budget_s: float,
    started: float,
    *,
    final_n: int,
    evals: int,
    workers: int,
) -> TimePlan:
    """The epochs that fit every run of ``cfgs`` (one per cell, trained side by side by ``workers`` processes) and
    their evaluation into ``budget_s`` seconds counted from ``started`` (a ``time.perf_counter()`` value).

    Args:
        cfgs: each cell's config (any epochs: they are what is chosen here).
        budget_s: the whole job's budget in seconds.
        started: when the job started.
        final_n: samples of each run's final evaluation.
        evals: evaluations during each run's training.
        workers: runs trained at once.

    Returns:
        The plan; its ``epochs`` is at least 1 even where the budget allows none (``estimate_s`` then exceeds
        ``budget_s``, and the caller says so).
    """
    threads = threads_per_worker(max(1, workers))  # as each worker will train
    # the cells side by side, as their workers will train them: they share the memory bus and the cache
    with fixed_threads(threads), ThreadPoolExecutor(max_workers=max(1, min(workers, len(cfgs)))) as pool:
        futures = {cell: pool.submit(cell_step_seconds, cfg) for cell, cfg in cfgs.items()}
        measured = {cell: future.result() for cell, future in futures.items()}
    step_s = {cell: seconds for cell, (seconds, _) in measured.items()}
    steps_per_epoch = max(n for _, n in measured.values())
    first = next(iter(cfgs.values()))
    eval_s = evaluation_seconds(first, final_n, evals, threads=threads)
    spent = time.perf_counter() - started
    rounds = math.ceil(len(cfgs) / max(1, workers))
    slowest = max(step_s.values())
    fixed = spent + WORKER_START_S + REPORT_S + eval_s * len(cfgs) / max(1, workers)
    room = budget_s * (1 - MARGIN) - fixed
    epochs = max(1, math.floor(room / rounds / (slowest * steps_per_epoch)))
    steps = epochs * steps_per_epoch
    estimate = fixed + rounds * steps * slowest
    return TimePlan(epochs, steps, step_s, eval_s, estimate, budget_s, spent)
