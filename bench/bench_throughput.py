"""Study throughput: how many training runs per hour one machine completes when N worker processes each train their
own run at once, for the paper MLP study cell and for the DCGAN data-efficiency grid.

    python bench/bench_throughput.py [--models mlp dcgan] [--workers 1 4 8 16] [--seconds 40] [--settle 3]
        [--warmup-steps 5] [--device cpu|cuda] [--threads 1] [--mlp-runs 20] [--set KEY=VALUE ...]

What each worker trains is the study's own config: ``mlp`` is configs/study/fmnist35-powered.yaml's ``normal`` cell
(paper MLP nets, Fashion-MNIST 35%, batch 128, bf16, 50 epochs: 9,600 steps a run), ``dcgan`` is
configs/study/fmnist-efficiency.yaml's ``normal-100`` cell (paper DCGAN nets, batch 128, fp32, 20 epochs), each under
its ``paper`` budget; ``--set KEY=VALUE`` overrides go on top for every worker (``compile=true``,
``precision=bf16``, ``xai=saliency``, ``batch_size=64``, ...) and into the projections (steps a run follow the
batch size, fraction and epochs). A worker is a ``spawn`` ed process that builds its trainer as the factories do
(seed, data, models, augmentation, guidance, :class:`xaigan.train.Trainer`), holds the data on the device, and
repeats the trainer's step (``gan_step`` on the trainer's training G and D, compiled if asked, then the weight
average's update) over its loader's batches; with ``xai`` set, the guidance is on, as in a run's guided epochs.
Left out: evaluations, samples, checkpoints and metric logging (a run's epoch-end work). The data is the real
dataset when it is installed (read, never downloaded), else random uint8 images of its size and count.

Every worker builds its run and takes ``--warmup-steps`` steps (compilation, cuDNN autotuning, allocator) before any
window; then for each N in ``--workers`` (ascending) the first N workers start together, train ``--settle``
seconds unmeasured, then ``--seconds`` measured; the others wait, idle. CPU workers use ``--threads`` (1) threads
each; CUDA workers all share the one device (cuda:0) and use one CPU thread each too. Each step ends in
``.item()`` calls (the trainer's losses), so a step's time on a GPU is its kernels' time, and every window ends with
``torch.cuda.synchronize()``.

Reported per N: steps/s of each process (mean, min-max), their total, runs/hour = N * steps/s / steps a run (the
study's mean), and the projected wall time of the study (``--mlp-runs`` runs of 9,600 steps; the DCGAN grid's 9
runs, 3 of 10,940 steps and 6 of 2,200), packed longest-first onto N workers at the measured per-process rate:
training alone, without the runs' evaluations.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# images in each dataset's "all" split (train + test), for the steps a run takes when the data is not installed
TOTAL_IMAGES = {"fashion-mnist": 70_000, "mnist": 70_000, "cifar10": 60_000}


@dataclass(frozen=True)
class Study:
    grid: str  # a grid file, relative to the repository root
    cell: str  # the cell the workers train
    budget: str
    whole_grid: bool  # the study is every run of the grid; else --mlp-runs runs of the cell
    label: str


STUDIES = {
    "mlp": Study("configs/study/fmnist35-powered.yaml", "normal", "paper", False, "MLP study"),
    "dcgan": Study("configs/study/fmnist-efficiency.yaml", "normal-100", "paper", True, "DCGAN grid"),
}


# -- configs and projections (parent) ------------------------------------------------------------------------------
def study_configs(study: Study, overrides: dict[str, Any], mlp_runs: int) -> tuple[Any, list[Any]]:
    """The config the workers train (the study's cell, seed 0, ``overrides`` on top) and every run's config."""
    from xaigan import config
    from xaigan.experiments import load_grid

    grid = load_grid(ROOT / study.grid)

    def resolved(cell: str, seed: int):
        return config.resolve(grid.cell_config(cell, study.budget, seed).to_dict(), overrides)

    train = resolved(study.cell, 0)
    if study.whole_grid:
        seeds = grid.seeds or [0]
        runs = [resolved(cell, seed) for seed in seeds for cell in grid.cells]
    else:
        runs = [resolved(study.cell, seed) for seed in range(mlp_runs)]
    return train, runs


def steps_per_run(cfg) -> int:
    """Steps of a run of ``cfg``: batches per epoch (the loader's count) times epochs."""
    from xaigan.data import select_fraction

    if cfg.dataset not in TOTAL_IMAGES:
        raise SystemExit(f"bench_throughput: no image count for dataset {cfg.dataset!r} ({sorted(TOTAL_IMAGES)})")
    total = TOTAL_IMAGES[cfg.dataset] if cfg.split == "all" else None
    if total is None:
        raise SystemExit(f"bench_throughput: split {cfg.split!r} is not counted here; use split all")
    n = len(select_fraction(total, cfg.fraction, cfg.subset, cfg.seed))
    full, rest = divmod(n, cfg.batch_size)
    per_epoch = full + (rest > 0 and not (cfg.drop_last and n >= cfg.batch_size))
    return per_epoch * cfg.epochs


def makespan(steps: list[int], workers: int, steps_per_s: float) -> float:
    """Seconds until ``workers`` processes at ``steps_per_s`` each finish runs of ``steps``, longest first."""
    loads = [0] * max(1, workers)
    for s in sorted(steps, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads) / steps_per_s


def hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the worker (a spawned process) ---------------------------------------------------------------------------------
def load_data(cfg):
    """The run's images: the installed dataset (never downloaded), else random uint8 of its size and count."""
    import torch

    from xaigan import data as data_mod

    try:
        data = data_mod.load(
            cfg.dataset,
            data_dir=cfg.data_dir,
            split=cfg.split,
            fraction=cfg.fraction,
            subset=cfg.subset,
            seed=cfg.seed,
            download=False,
        )
        return data, f"{cfg.dataset} ({data.meta.get('source', '?')}, {len(data):,} images)"
    except Exception as exc:  # not installed (or unreadable): random images of the same shape and count
        spec = data_mod.REGISTRY[cfg.dataset]
        n = len(data_mod.select_fraction(TOTAL_IMAGES[cfg.dataset], cfg.fraction, cfg.subset, cfg.seed))
        generator = torch.Generator().manual_seed(cfg.seed)
        shape = (n, spec.channels, spec.image_size, spec.image_size)
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        why = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        data = data_mod.ImageData(images, torch.full((n,), -1), {"source": "random"})
        return data, f"random uint8, {n:,} images of {tuple(shape[1:])} ({cfg.dataset}: {why})"


class Worker:
    """One run's trainer, built as :func:`xaigan.train.from_config` builds it, stepping as ``Trainer.fit`` does."""

    def __init__(self, cfg_dict: dict, device: str, run_dir: str) -> None:
        import torch

        from xaigan import models
        from xaigan.config import Config
        from xaigan.guidance import XAIGuidance
        from xaigan.train import Trainer, seed_everything
        from xaigan.train.factory import build_augment, build_guidance
        from xaigan.train.weights import sample_weights

        cfg = Config.from_dict(cfg_dict)
        self.device = torch.device(device)
        seed_everything(cfg.seed)
        data, self.source = load_data(cfg)
        G, D = models.build(cfg.model, data.channels, data.image_size, cfg.noise_dim, cfg.spectral_norm)
        augment = build_augment(cfg, D)
        trainer = Trainer(G, D, data, cfg, run_dir, augment=augment, device=self.device, progress=False)
        trainer.guidance = build_guidance(trainer.cfg, data.images, augment, self.device)
        self.trainer = trainer
        self.cfg = trainer.cfg  # as the trainer resolved it (precision, adam, compile)
        # a guided cell is measured in its guided epochs; a plain one in epoch 0
        self.epoch = self.cfg.xai_start_epoch if trainer.guidance is not None else 0
        self.guide = trainer.guidance if trainer.guidance_active(self.epoch) else None
        if isinstance(self.guide, XAIGuidance):
            self.guide.at_epoch(self.epoch)
        self.weights = sample_weights(self.cfg, trainer.runtime.d_output, self.epoch)
        self._batches = self._forever()
        trainer.G.train()
        trainer.D.train()

    def _forever(self):
        epoch = self.epoch
        while True:
            yield from self.trainer.loader.batches(epoch)
            epoch += 1

    def step(self) -> None:
        from xaigan.train import gan_step

        t = self.trainer
        real = next(self._batches)
        stats = gan_step(
            t._train_G, t._train_D, t.opt_g, t.opt_d, real, self.cfg, t.augment, self.guide, None, self.weights
        )
        if t.ema is not None:
            t.ema.update(t.G)
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"non-finite losses {stats}")

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def window(self, start: float, settle: float, seconds: float) -> tuple[int, float]:
        """Steps from wall-clock ``start`` on: ``settle`` seconds unmeasured, then ``seconds`` measured; returns the
        measured steps and their seconds (to the end of the last step, synchronised)."""
        while (wait := start - time.time()) > 0:
            time.sleep(min(wait, 0.05))
        while time.time() < start + settle:
            self.step()
        self.sync()
        t0, steps = time.time(), 0
        end = t0 + seconds
        while True:
            self.step()
            steps += 1
            if time.time() >= end:
                break
        self.sync()
        return steps, time.time() - t0


def worker_main(rank: int, spec: dict, commands, results) -> None:
    """A worker process: build, warm up, say ready, then run the windows it is sent until told to stop (or its
    parent is gone)."""
    import torch

    torch.set_num_threads(spec["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    run_dir = tempfile.mkdtemp(prefix=f"xaigan-throughput-{rank}-")
    parent = mp.parent_process()
    try:
        t0 = time.perf_counter()
        worker = Worker(spec["cfg"], spec["device"], run_dir)
        built = time.perf_counter() - t0
        for _ in range(spec["warmup_steps"]):
            worker.step()
        worker.sync()
        info = {
            "source": worker.source,
            "build_s": built,
            "warmup_s": time.perf_counter() - t0 - built,
            "precision": worker.cfg.precision,
            "adam": getattr(worker.cfg, "adam", "?"),
            "compile": getattr(worker.cfg, "compile", "?"),
        }
        results.put(("ready", rank, info))
        while True:
            try:
                command = commands.get(timeout=2.0)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return
                continue
            if command[0] == "stop":
                return
            _, start, settle, seconds = command
            steps, elapsed = worker.window(start, settle, seconds)
            results.put(("window", rank, (steps, elapsed)))
    except BaseException:
        results.put(("error", rank, traceback.format_exc()))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


# -- the parent ------------------------------------------------------------------------------------------------------
class Pool:
    """``n`` spawned workers training the same config (each its own run), stopped on exit whatever happens."""

    def __init__(self, n: int, spec: dict) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=worker_main, args=(r, spec, self.commands[r], self.results)) for r in range(n)]
        for p in self.procs:
            p.start()

    def collect(self, kind: str, ranks: list[int], timeout: float) -> dict[int, Any]:
        got: dict[int, Any] = {}
        deadline = time.time() + timeout
        while len(got) < len(ranks):
            try:
                what, rank, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r in ranks if r not in got and not self.procs[r].is_alive()]
                if dead:
                    codes = [self.procs[r].exitcode for r in dead]
                    raise RuntimeError(f"worker(s) {dead} died (exit codes {codes})") from None
                if time.time() > deadline:
                    missing = len(ranks) - len(got)
                    raise TimeoutError(f"{missing} worker(s) did not answer within {timeout:.0f} s") from None
                continue
            if what == "error":
                raise RuntimeError(f"worker {rank} failed:\n{payload}")
            if what == kind:
                got[rank] = payload
        return got

    def window(self, n: int, settle: float, seconds: float) -> list[tuple[int, float]]:
        start = time.time() + 0.5
        for r in range(n):
            self.commands[r].put(("window", start, settle, seconds))
        got = self.collect("window", list(range(n)), timeout=settle + seconds + 120)
        return [got[r] for r in range(n)]

    def close(self) -> None:
        for q in self.commands:
            try:
                q.put(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.time() + 10
        for p in self.procs:
            p.join(timeout=max(0.1, deadline - time.time()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def describe_machine(device: str) -> str:
    import torch

    where = device
    if device.startswith("cuda") and torch.cuda.is_available():
        where = f"{device} ({torch.cuda.get_device_name(0)})"
    return f"{where}, torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"


def bench_model(model: str, args, overrides: dict[str, Any]) -> None:
    study = STUDIES[model]
    train_cfg, runs = study_configs(study, {**overrides, "device": args.device.split(":")[0]}, args.mlp_runs)
    run_steps = [steps_per_run(c) for c in runs]
    mean_steps = statistics.mean(run_steps)
    counts: dict[int, int] = {}
    for s in run_steps:
        counts[s] = counts.get(s, 0) + 1
    shape = " + ".join(f"{k} x {s:,}" for s, k in sorted(counts.items(), reverse=True))
    cfg = train_cfg
    print(
        f"\n## {model}: {study.grid}, cell {study.cell} ({study.budget} budget"
        + (f"; --set {' '.join(args.set)}" if args.set else "")
        + f"): model {cfg.model}, {cfg.dataset} fraction {cfg.fraction:g}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, xai {cfg.xai}, explain_mode {cfg.explain_mode}, g_ema {cfg.g_ema:g}"
    )
    print(f"{study.label}: {len(run_steps)} runs = {shape} steps ({sum(run_steps):,} steps, mean {mean_steps:,.0f})")
    spec = {
        "cfg": cfg.to_dict(),
        "device": args.device,
        "threads": args.threads,
        "warmup_steps": args.warmup_steps,
    }
    n_max = max(args.workers)
    t0 = time.perf_counter()
    pool = Pool(n_max, spec)
    rows = []
    try:
        ready = pool.collect("ready", list(range(n_max)), timeout=args.start_timeout)
        first = ready[0]
        print(
            f"{n_max} worker(s) ready in {time.perf_counter() - t0:.0f} s "
            f"(worker 0: built in {first['build_s']:.1f} s, "
            f"{args.warmup_steps} warm-up steps in {first['warmup_s']:.1f} s); precision {first['precision']}, "
            f"adam {first['adam']}, compile {first['compile']}; data: {first['source']}\n"
        )
        print(f"| model | N | steps/s per process | min-max | total steps/s | runs/hour | {study.label} wall |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for n in sorted(set(args.workers)):
            measured = pool.window(n, args.settle, args.seconds)
            rates = [steps / elapsed for steps, elapsed in measured]
            per = statistics.mean(rates)
            total = sum(rates)
            runs_hour = total * 3600 / mean_steps
            wall = makespan(run_steps, n, per)
            rows.append((n, per, total))
            print(
                f"| {model} | {n} | {per:.2f} | {min(rates):.2f}-{max(rates):.2f} | {total:.1f} | {runs_hour:.1f} | "
                f"{hours(wall)} |",
                flush=True,
            )
    except (RuntimeError, TimeoutError) as exc:
        print(f"\n{model}: stopped: {exc}", flush=True)
    finally:
        pool.close()
    if rows:
        best = max(rows, key=lambda r: r[2])
        print(
            f"\nbest: N = {best[0]}, {best[2]:.1f} steps/s in all ({best[2] / rows[0][2]:.1f}x one process); "
            f"({time.perf_counter() - t0:.0f} s for {model})",
            flush=True,
        )


def stop_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "dcgan"], choices=sorted(STUDIES))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4, 8, 16], help="numbers of worker processes")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured seconds per N")
    parser.add_argument("--settle", type=float, default=3.0, help="unmeasured seconds before each window")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps each worker takes once it is built")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every worker on cuda:0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--mlp-runs", type=int, default=20, help="runs of the MLP study in the projection")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds for the workers to get ready")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    args = parser.parse_args()
    if min(args.workers) < 1:
        parser.error("--workers must be >= 1")

    from xaigan.config import parse_assignments

    overrides = parse_assignments(args.set)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available")
        if args.device != "cuda" and args.device != "cuda:0":
            parser.error("--device: every worker shares cuda:0; pass cuda")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the spawned workers inherit these
        os.environ[var] = str(args.threads)
    # the bash `timeout` that bounds this script sends SIGTERM: stop the workers on the way out
    signal.signal(signal.SIGTERM, stop_on_signal)
    print(
        f"# Study throughput: N processes each training its own run; {describe_machine(args.device)}; "
        f"{args.threads} thread(s) per worker; windows: {args.settle:g} s settle + {args.seconds:g} s measured"
    )
    for model in args.models:
        bench_model(model, args, overrides)


if __name__ == "__main__":
    main()
