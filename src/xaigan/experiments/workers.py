"""Train a grid's runs in several processes at once, the cores split between them.

Two processes with one thread each finish more GAN steps per second on 2 cores than one process with two threads
(small matmuls do not scale across threads; see ``docs/benchmarks.md``). Each worker trains whole runs (new ones, or
resumes stopped ones), one at a time, with ``torch.set_num_threads(threads)``; what a run computes does not depend on
which worker trains it. A worker that dies leaves its run's last checkpoint: the next invocation resumes it.

A worker whose parent dies (the ``reproduce`` process SIGKILLed) stops as on SIGTERM: its run finishes the step under
way, checkpoints and the worker exits without starting another run, so nothing trains on unseen and holds the
terminal or the run's lock.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from xaigan.config import Config
from xaigan.errors import RunError
from xaigan.experiments.grid import RunSpec
from xaigan.experiments.prepare import train_in_worker
from xaigan.train import StopRequested


class WorkerDiedError(RunError):
    """A worker process died (killed, out of memory); finished runs are kept, unfinished ones resume next time."""


def auto_workers(cfgs: list[Config]) -> int:
    """What measured fastest here: one single-threaded worker per core (docs/benchmarks.md), at most one per run; 1
    when any run asks for a GPU, whose runs would share it."""
    from xaigan.train import pick_device

    if not cfgs or any(pick_device(c.device).type != "cpu" for c in cfgs):
        return 1
    return max(1, min(os.cpu_count() or 1, len(cfgs)))


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


_PARENT: int | None = None
_busy = threading.Event()  # set while this worker trains a run
ORPHAN_POLL_S = 0.5
ORPHAN_GRACE_S = 300.0  # after SIGTERM, time to finish a step, an evaluation and the checkpoint before a hard exit


_PROGRESS: Any = None  # the queue this worker sends its runs' progress to (the parent draws it)


def _init_worker(parent: int, progress: Any = None) -> None:
    """Worker initializer: watch the parent, keep the progress queue, and give tqdm a thread lock. Its default also
    creates a multiprocessing lock, which shares nothing here (each spawned worker makes its own) and which a worker
    leaving by ``os._exit`` (stopped, orphaned) never frees, so the stopped grid ended with a resource_tracker
    warning."""
    global _PROGRESS
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    _PROGRESS = progress
    _watch_parent(parent)


def _watch_parent(parent: int) -> None:
    """Once ``parent`` is gone, SIGTERM this worker, and exit for good after a grace period."""
    global _PARENT
    _PARENT = parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while _busy.is_set() and time.monotonic() < deadline:  # the run checkpoints on the signal
            time.sleep(ORPHAN_POLL_S)
        os._exit(1)  # idle workers would otherwise wait on the task queue for ever

    threading.Thread(target=watch, name="xaigan-parent-watch", daemon=True).start()


def _orphaned() -> bool:
    return _PARENT is not None and os.getppid() != _PARENT


_stopped = False  # this worker's run was stopped by a signal: it starts no other run


def _train(cfg: dict[str, Any], run_dir: str, threads: int) -> dict[str, Any]:
    """In a worker: train one run to its end (or to a signal); returns the trainer's summary.

    A worker told to stop (SIGTERM from the pool when another worker died, or from :func:`_stop`) finishes its step
    and checkpoints; it must not then take a run still queued for it, or the pool's shutdown waits for that whole
    run (the hang seen once in the fault loop), so a stopped or orphaned worker exits instead of starting one."""
    global _stopped
    if _orphaned() or _stopped:  # a run queued before the parent died or the stop: left for the next invocation
        os._exit(1)
    _busy.set()
    sink = None
    if _PROGRESS is not None:
        channel = _PROGRESS

        def sink(p: Any) -> None:
            channel.put((run_dir, p))

    try:
        summary = train_in_worker(cfg, run_dir, threads, sink)
        _stopped = bool(summary.get("interrupted"))
        return summary
    finally:
        _busy.clear()


def train_parallel(
    todo: list[RunSpec],
    workers: int,
    report: Any = print,
    on_done: Callable[[RunSpec], None] | None = None,
    *,
    name: str = "grid",
    progress: bool = True,
) -> None:
    """Train every run in ``todo`` with ``workers`` processes; ``report`` gets one line per run, and
    ``on_done`` (if given) each finished run's spec, in this process, while the others train on. The workers send
    their runs' progress here, where it is shown (``progress``) as one bar per run in flight and the grid's ETA
    (:class:`xaigan.experiments.progress.GridProgress`); each run's own ``train.log`` gets its progress and
    evaluations either way.

    Raises :class:`xaigan.train.StopRequested` if a run was stopped by a signal (it checkpointed) and
    :class:`WorkerDiedError` if a worker died; runs finished before either are kept.
    """
    from xaigan.experiments.progress import GridProgress

    threads = threads_per_worker(workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads and open files
    channel = context.Queue()
    labels = {str(spec.run_dir): f"{spec.cell} seed {spec.seed}" for spec in todo}
    display = GridProgress(name, labels, min(workers, len(todo)), show=progress)
    display.follow(channel)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), channel)
    )
    futures = {pool.submit(_train, spec.cfg.to_dict(), str(spec.run_dir), threads): spec for spec in todo}
    try:
        _collect(futures, report, on_done)
    except BaseException:
        for future in futures:
            future.cancel()  # queued runs stay new
        _stop(pool, STOP_GRACE_S)
        raise
    finally:
        display.close()
    pool.shutdown(wait=True)


STOP_GRACE_S = 120.0  # for running workers to finish their step and checkpoint after SIGTERM


def _stop(pool: ProcessPoolExecutor, grace: float) -> None:
    """SIGTERM every worker (its run checkpoints at the end of the step; a Ctrl-C in a terminal reaches them anyway),
    wait up to ``grace`` seconds, then SIGKILL what is left: stopping a grid never waits for ever (atomic writes keep
    every file readable, and the next invocation resumes from the last checkpoint)."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except (ProcessLookupError, AttributeError, TypeError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)


def _collect(futures: dict, report: Any, on_done: Callable[[RunSpec], None] | None) -> None:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            spec = futures[future]
            try:
                summary = future.result()
            except BrokenProcessPool:
                raise WorkerDiedError(
                    f"a worker process died while training {Path(spec.run_dir)}; finished runs are kept, "
                    "run the same command again to resume the others"
                ) from None
            if summary.get("interrupted"):
                raise StopRequested(f"stopped in {spec.run_dir} at step {summary['step']}", summary.get("signal"))
            report(f"trained {spec.cell} seed {spec.seed}: {summary['steps']} steps, {summary['train_seconds']:.0f} s")
            if on_done is not None:
                on_done(spec)
