"""Run logging: ``metrics.jsonl`` (append-only), optional TensorBoard scalars and images."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xaigan.process import log_once
from xaigan.rundir import RunDir

log = logging.getLogger(__name__)


class RunLogger:
    """Appends one JSON object per logged step to the run's metrics; mirrors scalars to TensorBoard if present.

    Args:
        run: the run folder (``metrics.jsonl`` is opened for appending).
        tensorboard: also write TensorBoard scalars and images when TensorBoard is installed.

    Example:
        >>> from xaigan.rundir import RunDir
        >>> run = RunDir("/tmp/xaigan-example-run")
        >>> run.path.mkdir(parents=True, exist_ok=True)
        >>> logger = RunLogger(run, tensorboard=False)
        >>> logger.log({"step": 1, "epoch": 0, "d_loss": 1.2, "g_loss": 0.8})
        >>> logger.close()
    """

    def __init__(self, run: RunDir, tensorboard: bool = True) -> None:
        self._handle = open(run.metrics_path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run.tensorboard_dir))
            except ImportError:
                log_once(
                    log,
                    logging.INFO,
                    "tensorboard is not installed: no TensorBoard logs (pip install 'xaigan[tensorboard]', or "
                    "set tensorboard: false)",
                )

    def log(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tb.add_scalar(key, value, step)

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, grid, step, dataformats="HWC")

    def close(self) -> None:
        self._handle.close()
        if self._tb is not None:
            self._tb.close()


class NullLogger:
    """What a distributed run's ranks other than 0 log to: nothing (rank 0 owns the run folder)."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def image(self, tag: str, grid: np.ndarray, step: int) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """While the block runs, xaigan's INFO logs (progress lines, evaluations, warnings) are appended to ``path``,
    also in a worker process where nothing else configured logging."""
    from xaigan.train.progress import progress_log

    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    loggers = [logging.getLogger("xaigan"), progress_log]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
