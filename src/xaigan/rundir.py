"""The run folder: its fixed layout and the readers and writers of every file in it.

::

    RUN/
      config.yaml        every resolved config key
      data.json          where the data came from (source, subset, content hash)
      metrics.jsonl      one JSON record per logged step or evaluation
      train.log          the run's log: progress every ~30 s, evaluations, warnings (appended on resume)
      checkpoints/       last.pt (resume), previous.pt (the one before, until the run finishes),
                         best.pt (best FID when evaluated during training)
      samples/           epoch_NNNN.png from the fixed noise
      explanations/      epoch_NNNN.png: samples beside the heat-maps of D's explanations
      tensorboard/       TensorBoard logs (when installed)
      eval.json          the last ``xaigan evaluate`` result
      summary.json       written when training finishes

No other module spells these names; everything goes through :class:`RunDir`. Writes are atomic.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from xaigan.errors import InputError, MissingFileError
from xaigan.io import UnreadableFileError, atomic_write_text, remove_stale_temps

LAST = "last.pt"
PREVIOUS = "previous.pt"
BEST = "best.pt"


class RunLockedError(InputError):
    """Another process is training or resuming this run."""


class RunLock:
    """An exclusive lock on a run folder for as long as it is held (released by :meth:`release` or when the
    process dies, so a dead process never leaves a stale lock: ``flock`` locks belong to open files)."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "?"
            self._handle.close()
            raise RunLockedError(f"{path.parent} is in use by another xaigan process (pid {holder})") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def flock_holders(locks: str = "/proc/locks") -> dict[tuple[int, int, int], int]:
    """``(device major, minor, inode) -> pid`` of every ``flock`` lock held on this machine, from Linux's
    ``/proc/locks`` (empty where there is none): who holds a lock, asked without taking one."""
    try:
        lines = Path(locks).read_text().splitlines()
    except OSError:
        return {}
    held = {}
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":  # "->": a process waiting for the lock
            continue
        try:
            major, minor, inode = fields[5].split(":")
            held[int(major, 16), int(minor, 16), int(inode)] = int(fields[4])
        except ValueError:
            continue
    return held


class RunDir:
    """One run folder (it need not exist yet); ``RunDir(path)`` also accepts a ``RunDir`` (it is path-like)."""

    CONFIG = "config.yaml"
    DATA = "data.json"
    METRICS = "metrics.jsonl"
    LOG = "train.log"
    CHECKPOINTS = "checkpoints"
    SAMPLES = "samples"
    EXPLANATIONS = "explanations"
    TENSORBOARD = "tensorboard"
    EVAL = "eval.json"
    SUMMARY = "summary.json"
    LOCK = ".lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- paths ----------------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def data_path(self) -> Path:
        return self.path / self.DATA

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def eval_path(self) -> Path:
        return self.path / self.EVAL

    @property
    def copying_path(self) -> Path:
        return self.path / "copying.json"

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def samples_dir(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def explanations_dir(self) -> Path:
        return self.path / self.EXPLANATIONS

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    def checkpoint(self, name: str = LAST) -> Path:
        return self.path / self.CHECKPOINTS / name

    def sample_path(self, epoch: int) -> Path:
        return self.samples_dir / f"epoch_{epoch:04d}.png"

    def explanation_path(self, epoch: int) -> Path:
        return self.explanations_dir / f"epoch_{epoch:04d}.png"

    def sample_paths(self) -> list[Path]:
        """The sample grids written so far, oldest epoch first."""
        return sorted(self.samples_dir.glob("epoch_*.png"))

    def explanation_paths(self) -> list[Path]:
        """The explanation figures written so far, oldest epoch first."""
        return sorted(self.explanations_dir.glob("epoch_*.png"))

    # -- state ----------------------------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether a run was started here (config, metrics, checkpoints or summary present)."""
        markers = (self.config_path, self.metrics_path, self.path / self.CHECKPOINTS, self.summary_path)
        return any(m.exists() for m in markers)

    def state(self) -> str:
        """``done`` (trained and evaluated), ``trained`` (needs evaluation), ``partial`` (resume), ``started``
        (stopped before its first checkpoint: nothing to resume, start again) or ``new``."""
        if self.summary_path.is_file():
            return "done" if self.eval_path.is_file() else "trained"
        if self.checkpoint(LAST).is_file() or self.checkpoint(PREVIOUS).is_file():
            return "partial"
        if self.holds_run():
            return "started"
        return "new"

    def lock(self) -> RunLock:
        """Take the folder's lock (creating the folder); :class:`RunLockedError` when another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        return RunLock(self.path / self.LOCK)

    def holder(self, locks: str = "/proc/locks") -> int | None:
        """The pid of the process that holds the folder's lock (training or resuming the run now), None if none holds
        it (or the system cannot tell); takes no lock and writes nothing."""
        try:
            st = (self.path / self.LOCK).stat()
        except OSError:
            return None
        return flock_holders(locks).get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))

    def remove_stale_temps(self) -> int:
        """Delete temp files left in the folder by processes killed mid-write (never read by anyone)."""
        return remove_stale_temps(self.path)

    def clear(self) -> None:
        """Delete every file of the layout (``--overwrite``); other files in the folder are left alone."""
        for name in (
            self.CONFIG, self.DATA, self.METRICS, self.LOG, self.CHECKPOINTS, self.SAMPLES, self.EXPLANATIONS,
            self.TENSORBOARD, self.EVAL, self.SUMMARY,
        ):  # fmt: skip
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    # -- readers and writers --------------------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The stored config as a plain mapping (validate it with :class:`xaigan.config.Config`)."""
        if not self.config_path.is_file():
            raise MissingFileError(f"{self.path} holds no run (no {self.CONFIG})")
        try:
            loaded = yaml.safe_load(self.config_path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"{self.config_path} is not readable YAML ({_first_line(exc)})") from exc
        if not isinstance(loaded, dict):
            raise UnreadableFileError(f"{self.config_path} does not hold a mapping of key: value")
        return loaded

    def write_config(self, cfg: Mapping[str, Any]) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(dict(cfg), sort_keys=True))

    def read_data_meta(self) -> dict[str, Any]:
        return self._read_json(self.data_path)

    def write_data_meta(self, meta: Mapping[str, Any]) -> None:
        atomic_write_text(self.data_path, json.dumps(dict(meta), indent=2))

    def read_eval(self) -> dict[str, Any]:
        return self._read_json(self.eval_path) if self.eval_path.is_file() else {}

    def write_eval(self, result: Mapping[str, Any]) -> None:
        atomic_write_text(self.eval_path, json.dumps(dict(result), indent=2))

    def read_summary(self) -> dict[str, Any]:
        return self._read_json(self.summary_path) if self.summary_path.is_file() else {}

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_text(self.summary_path, json.dumps(dict(summary), indent=2))

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, step: int, epoch_end_too: bool = False) -> None:
        """Keep only records up to ``step`` (those after a checkpoint belong to steps that will be trained again);
        with ``epoch_end_too`` also drop the epoch-end records (evaluations) logged at ``step`` itself."""

        def keep(r: dict[str, Any]) -> bool:
            s = r.get("step", 0)
            return s < step or (s == step and not (epoch_end_too and "epoch_end" in r))

        records = [r for r in self.read_metrics() if keep(r)]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise MissingFileError(f"no file {path}")
        try:
            loaded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnreadableFileError(f"{path} is truncated or not JSON ({_first_line(exc)})") from exc
        if not isinstance(loaded, dict):
            raise UnreadableFileError(f"{path} does not hold a JSON object")
        return loaded


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
