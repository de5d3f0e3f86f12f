"""A trainer for one run of a study: new or resumed, with evaluation during training attached when asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xaigan import train
from xaigan.config import Config
from xaigan.evaluate import attach
from xaigan.rundir import RunDir
from xaigan.train.distributed import Dist


def prepare_run(
    cfg: Config | None,
    run_dir: str | Path | RunDir,
    *,
    resume: bool = False,
    overwrite: bool = False,
    dist: Dist | None = None,
    progress: bool | None = None,
) -> train.Trainer:
    """A trainer for a new run of ``cfg`` (or, with ``resume``, the stopped run in ``run_dir``; ``cfg`` unused)
    with per-epoch evaluation attached when ``eval_every`` asks for it (shared by a distributed run's ranks).

    Args:
        cfg: the run's config (None only with ``resume``).
        run_dir: the run folder.
        resume: continue the stopped run in ``run_dir`` (:func:`xaigan.train.resume`).
        overwrite: replace a run the folder already holds.
        dist: this process's rank in a distributed run, or None.
        progress: show the run's progress in this process (None: as its config says).

    Returns:
        The trainer; call ``fit()`` on it.

    Raises:
        ValueError: no ``cfg`` for a new run.

    Example:
        >>> from xaigan.config import Config
        >>> trainer = prepare_run(Config(dataset="mnist", epochs=1, eval_every=1), "runs/mnist-evaluated")
        >>> summary = trainer.fit()  # FID, KID, ... logged after every epoch
    """
    if not resume and cfg is None:
        raise ValueError("prepare_run needs a config for a new run")
    if resume:
        trainer = train.resume(run_dir, dist=dist, progress=progress)
    else:
        trainer = train.from_config(cfg, run_dir, overwrite=overwrite, dist=dist, progress=progress)
    if trainer.cfg.eval_every > 0:
        attach(trainer)
    return trainer


def train_in_worker(cfg: dict, run_dir: str, threads: int, progress: Callable[[Any], None] | None = None) -> dict:
    """In a worker process (local pool or Ray task): train the run in ``run_dir`` to its end (or to a signal) from
    the folder's state when it starts: new, started again from scratch, or resumed from its last checkpoint (so a
    retried task resumes). ``progress``: where to send the run's progress (the parent shows it). Returns the
    trainer's summary; a run already trained returns its summary."""
    import torch

    torch.set_num_threads(threads)
    run = RunDir(run_dir)
    state = run.state()
    if state in ("trained", "done"):  # e.g. a retry of a task whose worker died after the run's last write
        return {**run.read_summary(), "interrupted": False}
    resume, overwrite = state == "partial", state == "started"
    trainer = prepare_run(Config.from_dict(cfg), run, resume=resume, overwrite=overwrite, progress=False)
    trainer.progress_sink = progress  # the parent shows it
    return trainer.fit()
