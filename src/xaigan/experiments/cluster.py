"""Train a grid's runs as Ray tasks, on this machine or a Ray cluster (``reproduce --executor ray``).

Each run (cell x seed) is one task with declared resources. A task reads its run folder's state when it starts, so
a task retried after its worker died (killed, node lost) resumes from the run's last checkpoint. A run whose task
still fails after ``retries`` retries, or raises, is reported as failed; the other runs go on. The run folders are
the same as with the local executor: on a cluster they must live on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from xaigan.config import Config
from xaigan.errors import InputError
from xaigan.experiments.grid import RunSpec
from xaigan.experiments.prepare import train_in_worker

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


class RayUnavailableError(InputError):
    """Ray is not installed, or its cluster cannot be reached."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--executor ray needs Ray: pip install 'xaigan[ray]' (or pip install ray)") from None
    return ray


def check_address(address: str) -> None:
    """Fail fast, with one clear message, on an address Ray would retry for a minute: ``HOST:PORT`` must accept a
    TCP connection (``auto`` and ``local`` are Ray's own and pass through; ``ray://`` client addresses too)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayUnavailableError(f"--address must be HOST:PORT (e.g. 10.0.0.5:6379), auto or local, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayUnavailableError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(address: str | None, cpus: int | None = None) -> tuple[Any, str | None]:
    """Start a local Ray instance (``address`` None: ``cpus`` CPUs, default all) or join the cluster at
    ``address``; returns the ray module and the dashboard's URL (None when Ray runs without its dashboard)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, None
    if address is not None:
        check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        kwargs["num_cpus"] = cpus or os.cpu_count() or 1
    try:
        context = ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"cannot start or join Ray at {address or 'local'}: {exc}") from None
    url = getattr(context, "dashboard_url", None)
    return ray, (url if url and url.startswith("http") else f"http://{url}") if url else None


def resources(cfg: Config, cpus: int | None, gpus: float | None) -> tuple[int, float]:
    """The CPUs and GPUs one run's task declares: 1 CPU and, for a run on ``cuda``, 1 GPU unless given."""
    return cpus or 1, gpus if gpus is not None else (1.0 if cfg.device == "cuda" else 0.0)


def train_on_ray(
    todo: list[RunSpec],
    *,
    address: str | None = None,
    retries: int = 2,
    cpus_per_run: int | None = None,
    gpus_per_run: float | None = None,
    runtime_env: dict[str, Any] | None = None,
    report: Callable[[str], Any] = print,
    on_done: Callable[[RunSpec], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every run in ``todo`` as a Ray task; ``on_done`` gets each finished run's spec here (evaluation,
    recording) while the others train on. Returns the failed runs, ``{"cell", "seed", "run_dir", "error"}``.

    A task whose worker process dies is retried ``retries`` times from the run's last checkpoint. A run stopped by
    a signal raises :class:`xaigan.train.StopRequested`, as with the local executor."""
    from xaigan.train import StopRequested

    ray, dashboard = connect(address)
    report(f"Ray dashboard: {dashboard}" if dashboard else "Ray: no dashboard (pip install 'ray[default]' for one)")
    pending: dict[Any, RunSpec] = {}
    for spec in todo:
        cpus, gpus = resources(spec.cfg, cpus_per_run, gpus_per_run)
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": retries}
        if runtime_env:
            options["runtime_env"] = runtime_env
        task = ray.remote(train_in_worker).options(**options)
        pending[task.remote(spec.cfg.to_dict(), str(spec.run_dir), cpus)] = spec
    failed: list[dict[str, Any]] = []
    total, finished = len(pending), 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            finished += 1
            try:
                summary = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                error = _short(exc)
                failed.append({"cell": spec.cell, "seed": spec.seed, "run_dir": str(spec.run_dir), "error": error})
                report(f"FAILED {spec.cell} seed {spec.seed}: {error}")
            else:
                if summary.get("interrupted"):
                    raise StopRequested(f"stopped in {spec.run_dir} at step {summary['step']}", summary.get("signal"))
                secs = summary.get("train_seconds", 0.0)
                report(f"trained {spec.cell} seed {spec.seed}: {summary.get('steps')} steps, {secs:.0f} s")
                if on_done is not None:
                    on_done(spec)
            if progress is not None:
                progress(finished, total)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)  # each run keeps its last checkpoint and resumes next time
        raise
    return failed


def _short(exc: BaseException) -> str:
    """The last line of a Ray error (its cause), not the remote traceback."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
