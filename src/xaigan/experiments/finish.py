"""The last step of a grid's run: score each trained run, record it, and collect what aggregation needs from it."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from xaigan.evaluate import Evaluator, evaluate_run
from xaigan.experiments.grid import EvalSettings, RunSpec
from xaigan.experiments.record import record_run, recorded_path
from xaigan.rundir import RunDir


class Finisher:
    """Finishes each trained run once: evaluates it (unless ``evaluation`` is None) and copies it into ``record``.
    The pass over runs trained before, an executor's report of each run it trained and the final pass all call it;
    a run finished (evaluated, and recorded) is not finished again. The feature extractors and reference statistics
    are loaded once per dataset and shared by the runs.

    Args:
        evaluation: how to score each run, or None to leave runs trained but unscored.
        record: a folder each finished run's small artefacts are copied into, or None.

    Example:
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> finish = Finisher(EvalSettings.from_grid(grid), record=None)
        >>> for spec in grid.runs(Path("runs/fmnist35-powered"), "paper", [0]):
        ...     finish(spec)
    """

    def __init__(self, evaluation: EvalSettings | None, record: str | Path | None) -> None:
        self.evaluation = evaluation
        self.record = record
        self._evaluators: dict[tuple[str, str | None], Evaluator] = {}
        self._finished: set[tuple[str, int]] = set()

    def __call__(self, spec: RunSpec) -> None:
        """Evaluate ``spec``'s run if it is trained and not yet scored, and record it once it is.

        Args:
            spec: a run of the grid (a run not trained yet is left as it is).
        """
        if (spec.cell, spec.seed) in self._finished:
            return
        run = RunDir(spec.run_dir)
        if self.evaluation is not None and run.state() == "trained":
            evaluate_run(run, n=self.evaluation.n, evaluator=self._evaluator(spec, self.evaluation))
        if run.state() == "done":
            if self.record is not None:
                record_run(run, recorded_path(self.record, spec))
            self._finished.add((spec.cell, spec.seed))

    def _evaluator(self, spec: RunSpec, ev: EvalSettings) -> Evaluator:
        key = (spec.cfg.dataset, spec.cfg.data_dir)
        if key not in self._evaluators:
            self._evaluators[key] = Evaluator(key[0], data_dir=key[1], reference=ev.reference, features=ev.features)
        return self._evaluators[key]


LATE_EVALS = 3  # in-training evaluations averaged into a run's late FID


def collect(spec: RunSpec) -> dict[str, Any]:
    """What aggregation needs from one finished run folder (``step_median``: the median of the logged per-step
    times, robust to a stall or a competing job, unlike the summary's mean; ``step_times``: each logged step's
    ``(epoch, seconds, guided)``, guided when it logged xAI stats, so that a cell whose guidance starts mid-run is
    timed per phase; ``late_fid``: the mean of the last :data:`LATE_EVALS` in-training FIDs, or of as many as there
    are, None without any; ``late_extractor``: the weights hash they were scored with, None where older runs did not
    log it, ``"mixed"`` where they were scored with several; ``late_from``: the fraction of the run's steps done at
    the first of them, None where the run did not log steps).

    Args:
        spec: a run of the grid, trained and evaluated.

    Returns:
        ``cell``, ``seed``, ``run_dir``, ``summary``, ``eval`` and the timing and late-FID keys above.

    Example:
        >>> from pathlib import Path
        >>> grid = load_grid("configs/study/fmnist35-powered.yaml")
        >>> records = [collect(spec) for spec in grid.runs(Path("results/fmnist35-powered"), "paper", [0])]
    """
    run = RunDir(spec.run_dir)
    metrics = run.read_metrics()
    steps = [m for m in metrics if isinstance(m.get("sec_per_step"), (int, float))]
    times = [m["sec_per_step"] for m in steps]
    late = [m for m in metrics if isinstance(m.get("fid"), (int, float))][-LATE_EVALS:]
    scored_by = {m.get("extractor") for m in late}
    summary = run.read_summary()
    total = summary.get("steps")
    late_from = float(late[0]["step"]) / total if late and isinstance(late[0].get("step"), int) and total else None
    return {
        "cell": spec.cell,
        "seed": spec.seed,
        "run_dir": str(run.path),
        "summary": summary,
        "eval": run.read_eval(),
        "step_median": float(statistics.median(times)) if times else None,
        "step_times": [(int(m.get("epoch", 0)), float(m["sec_per_step"]), "xai_explained" in m) for m in steps],
        "late_fid": float(statistics.fmean(float(m["fid"]) for m in late)) if late else None,
        "late_extractor": (scored_by.pop() if len(scored_by) == 1 else "mixed") if late else None,
        "late_from": late_from,
    }
