"""Fault injection: kill, signal, fill the disk under, or make read-only the folder of ``xaigan train``,
``evaluate``, ``reproduce`` and ``report`` at seeded random moments, run the same job again to completion, and
compare every file with an uninterrupted reference run.

    python -m tests.fault_injection --trials 24 --seed 0 --json docs/reliability.json

Moments are drawn two ways: a wall-clock delay (uniform over the reference job's duration, start-up included) and
an atomic-write number (the ``$XAIGAN_FAILPOINT`` hook in :mod:`xaigan.io`: the process dies with the temp file half
written, or the write fails as on a full disk or a read-only folder). After every fault each file in the job's folder
must read back whole; after the rerun every file must equal the reference's (timings aside).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

TIMING_KEYS = {
    *("seconds", "train_seconds", "sec_per_step", "sec_per_guided_step", "xai_seconds", "wall_s"),
    *("step_time_ratio", "step_time"),
}
KINDS = ("sigkill-time", "sigkill-write", "signal", "disk-full", "read-only")


@dataclass
class Scenario:
    """One job: ``first`` starts it in a trial folder prepared by ``prepare``; ``again`` continues it after a
    fault (what the job's own messages tell a user to run); ``folder`` is what is compared."""

    name: str
    prepare: Callable[[Path, Path], None]  # (trial folder, reference root) -> inputs in place
    first: list[str]
    again: Callable[[Path], list[str]]
    folder: str
    kinds: tuple[str, ...] = KINDS
    timed: tuple[str, ...] = ()  # files that print wall-clock step times of the runs trained in the job


@dataclass
class Trial:
    scenario: str
    kind: str
    moment: str
    fault_rc: int | None = None
    rerun_rc: int | None = None
    unreadable_after_fault: list[str] = field(default_factory=list)
    files_checked: int = 0
    mismatched: list[str] = field(default_factory=list)
    stale_temps: int = 0
    error_line: str = ""
    traceback: bool = False  # a fault the job handles (a signal, a full disk) must be one line, not a traceback
    stderr_tail: str = ""  # the end of stderr at the fault, kept when it holds a traceback

    @property
    def survived(self) -> bool:
        clean = not self.unreadable_after_fault and not self.mismatched and not self.traceback and not self.stale_temps
        return self.rerun_rc == 0 and clean


# -- digests: what must be identical to the reference ------------------------------------------------------------
def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _tensor_digest(obj: Any, h: Any) -> None:
    if isinstance(obj, torch.Tensor):
        h.update(str((obj.dtype, tuple(obj.shape))).encode())
        h.update(obj.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if k in TIMING_KEYS:
                continue
            h.update(str(k).encode())
            _tensor_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensor_digest(v, h)
    else:
        h.update(repr(obj).encode())


def read_whole(path: Path) -> str:
    """The file's content digest (timings removed); raises if it does not read back as a whole file."""
    h = hashlib.sha256()
    suffix = path.suffix
    if suffix == ".pt":
        _tensor_digest(torch.load(path, weights_only=True), h)
    elif suffix == ".json":
        h.update(json.dumps(_strip(json.loads(path.read_text())), sort_keys=True).encode())
    elif suffix == ".jsonl":  # appended line by line: a torn last line is skipped by the reader, by design
        lines = path.read_text().splitlines()
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(_strip(json.loads(line)))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise
        h.update(json.dumps(records, sort_keys=True).encode())
    elif suffix == ".yaml":
        h.update(json.dumps(yaml.safe_load(path.read_text()), sort_keys=True).encode())
    elif suffix == ".png":
        with Image.open(path) as img:
            img.load()
        h.update(path.read_bytes())
    elif suffix == ".npz":
        with np.load(path) as arrays:
            for k in sorted(arrays.files):
                h.update(k.encode() + arrays[k].tobytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def digest(folder: Path, timed: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file's digest; files in ``timed`` (reports printing step times) and run logs only have to read back
    whole."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if not path.is_file() or _is_temp(path) or path.name == ".lock":
            continue
        if path.suffix == ".log":  # a run's log tells its own history (timestamps, the stop, the resume)
            path.read_text(encoding="utf-8")  # raises if torn mid-character
            out[rel] = "log"
            continue
        out[rel] = "read whole" if rel in timed and read_whole(path) else read_whole(path)
    return out


def check_readable(folder: Path) -> tuple[int, list[str]]:
    """After a fault: every non-temp file must read back whole."""
    bad, n = [], 0
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.is_file() and not _is_temp(path) and path.name != ".lock":
            n += 1
            try:
                read_whole(path)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                bad.append(f"{path.relative_to(folder)}: {type(exc).__name__}")
    return n, bad


# -- the jobs ----------------------------------------------------------------------------------------------------
class Jobs:
    """Builds the scenarios over one tiny labelled image folder (so the domain extractor and its cache are real)."""

    def __init__(self, root: Path) -> None:
        from tests.conftest import write_image_folder

        self.root = root
        self.images = root / "imgs"
        if not self.images.exists():
            write_image_folder(self.images, n=120, size=32, mode="L")
        data = f"folder:{self.images}"
        self.train_args = [
            "train",
            "--dataset",
            data,
            "--epochs",
            "4",
            "--batch-size",
            "40",
            "--xai",
            "saliency",
            "--xai-start",
            "0",
            "--set",
            "eval_every=2",
            "--set",
            "eval_n=100",
            "--quiet",
        ]
        grid = {
            "name": "faults",
            "base": {"dataset": data, "batch_size": 40},
            "budgets": {"quick": {"epochs": 2}},
            "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency", "xai_start": 0.0}},
            "evaluation": {"n": 100},
        }
        self.grid_text = yaml.safe_dump(grid, sort_keys=False)

    def scenarios(self) -> list[Scenario]:
        def none(trial: Path, ref: Path) -> None:
            pass

        def trained_run(trial: Path, ref: Path) -> None:
            shutil.copytree(ref / "train" / "run", trial / "run")
            (trial / "run" / "eval.json").unlink(missing_ok=True)

        def grid_file(trial: Path, ref: Path) -> None:
            (trial / "grid.yaml").write_text(self.grid_text)

        def finished_grid(trial: Path, ref: Path) -> None:
            shutil.copytree(ref / "reproduce" / "out", trial / "out")
            for name in ("report.md", "report.html", "aggregate.json", "report_files"):
                target = trial / "out" / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

        def train_again(trial: Path) -> list[str]:
            from xaigan.rundir import RunDir

            state = RunDir(trial / "run").state()
            if state in ("partial", "trained", "done"):
                return ["train", "--resume", "run", "--quiet"]
            return [*self.train_args, "--out", "run", *(["--overwrite"] if state == "started" else [])]

        reproduce = ["reproduce", "grid.yaml", "--out", "out", "--budget", "quick", "--seeds", "1", "--quiet"]
        return [
            Scenario("train", none, [*self.train_args, "--out", "run"], train_again, "run"),
            Scenario(
                "evaluate",
                trained_run,
                ["evaluate", "run", "--n", "100"],
                lambda t: ["evaluate", "run", "--n", "100"],
                "run",
            ),
            Scenario("reproduce", grid_file, reproduce, lambda t: reproduce, "out", timed=("report.md", "report.html")),
            Scenario("report", finished_grid, ["report", "out"], lambda t: ["report", "out"], "out"),
        ]


def _env(home: Path, failpoint: str | None) -> dict[str, str]:
    env = {**os.environ, "XAIGAN_HOME": str(home), "XAIGAN_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("XAIGAN_FAILPOINT", None)
    if failpoint:
        env["XAIGAN_FAILPOINT"] = failpoint
    return env


def run_cli(args: list[str], cwd: Path, home: Path, failpoint: str | None = None) -> tuple[int, str]:
    command = [sys.executable, "-m", "xaigan", *args]
    proc = subprocess.run(command, cwd=cwd, env=_env(home, failpoint), capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stderr


def _start(args: list[str], cwd: Path, home: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "xaigan", *args]
    env = _env(home, None)
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,  # as from a terminal, even when this harness runs as a background job
    )


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


@dataclass
class Reference:
    seconds: float
    writes: list[str]
    files: dict[str, str]


def build_references(root: Path, jobs: Jobs) -> dict[str, Reference]:
    """Each job run once without faults (in order: evaluate and report start from train's and reproduce's
    results), with every atomic write traced."""
    refs = {}
    for sc in jobs.scenarios():
        folder = root / "ref" / sc.name
        folder.mkdir(parents=True, exist_ok=True)
        sc.prepare(folder, root / "ref")
        trace = folder.parent / f"{sc.name}.writes"
        t0 = time.perf_counter()
        rc, err = run_cli(sc.first, folder, root / "ref" / f"home-{sc.name}", failpoint=f"trace:{trace}")
        if rc != 0:
            raise RuntimeError(f"reference {sc.name} failed ({rc}): {err[-2000:]}")
        seconds = time.perf_counter() - t0
        writes = trace.read_text().splitlines() if trace.exists() else []
        refs[sc.name] = Reference(seconds, writes, digest(folder / sc.folder, sc.timed))
    return refs


def run_trial(root: Path, sc: Scenario, ref: Reference, kind: str, rng: random.Random, index: int) -> Trial:
    trial_dir = root / "trials" / f"{sc.name}-{index:03d}"
    shutil.rmtree(trial_dir, ignore_errors=True)
    trial_dir.mkdir(parents=True)
    sc.prepare(trial_dir, root / "ref")
    home = trial_dir / "home"  # empty: the domain extractor and feature caches are written inside the job
    if kind in ("sigkill-time", "signal"):
        delay = rng.uniform(0.0, ref.seconds)
        sig = signal.SIGKILL if kind == "sigkill-time" else rng.choice([signal.SIGINT, signal.SIGTERM])
        trial = Trial(sc.name, kind, f"{signal.Signals(sig).name} at {delay:.2f} s of {ref.seconds:.1f}")
        proc = _start(sc.first, trial_dir, home)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        trial.fault_rc = proc.returncode
    else:
        n = rng.randint(1, max(len(ref.writes), 1))
        what = {"sigkill-write": "kill", "disk-full": "enospc", "read-only": "erofs"}[kind]
        written = ref.writes[n - 1] if ref.writes else "?"
        trial = Trial(sc.name, kind, f"{what} at write {n}/{len(ref.writes)} ({written})")
        counter = trial_dir.parent / f".{trial_dir.name}.writes"  # writes counted over the job's processes
        trial.fault_rc, err = run_cli(sc.first, trial_dir, home, failpoint=f"{what}:{n}:{counter}")
    trial.traceback = "Traceback" in err
    if trial.traceback:
        trial.stderr_tail = "\n".join(err.strip().splitlines()[-25:])
    lines = [line for line in err.strip().splitlines() if line.startswith("xaigan: ")]
    trial.error_line = lines[-1] if lines else ""
    trial.files_checked, trial.unreadable_after_fault = check_readable(trial_dir / sc.folder)
    rc = trial.fault_rc
    for _ in range(3):  # a job stopped by a signal or an error is simply run again
        if rc == 0:
            break
        rc, err = run_cli(sc.again(trial_dir), trial_dir, home)
    trial.rerun_rc = rc
    if rc != 0:
        trial.error_line = err.strip().splitlines()[-1] if err.strip() else trial.error_line
        return trial
    trial.stale_temps = sum(1 for p in (trial_dir / sc.folder).rglob("*") if _is_temp(p))
    got = digest(trial_dir / sc.folder, sc.timed)
    trial.mismatched = sorted(k for k in set(got) | set(ref.files) if got.get(k) != ref.files.get(k))
    if trial.survived:  # a failed trial's folder stays for inspection
        shutil.rmtree(trial_dir, ignore_errors=True)
    return trial


def run(
    trials: int,
    seed: int,
    root: Path | None = None,
    scenarios: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
) -> list[Trial]:
    """``trials`` faults per scenario, kinds in turn, moments drawn from ``random.Random(seed)``."""
    root = root or Path(tempfile.mkdtemp(prefix="xaigan-faults-"))
    jobs = Jobs(root)
    refs = build_references(root, jobs)
    rng = random.Random(seed)
    out = []
    for sc in jobs.scenarios():
        if scenarios and sc.name not in scenarios:
            continue
        for i in range(trials):
            kind = sc.kinds[i % len(sc.kinds)]
            if kinds and kind not in kinds:
                continue
            out.append(run_trial(root, sc, refs[sc.name], kind, rng, i))
    return out


def table(results: list[Trial]) -> str:
    rows = [
        "| job | fault | injected | survived (rerun identical) | files checked after fault | unreadable | "
        "files differing | temp files left | exit codes at fault |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Trial]] = {}
    for t in results:
        groups.setdefault((t.scenario, t.kind), []).append(t)
    for (job, kind), ts in groups.items():
        codes = Counter(t.fault_rc for t in ts)
        rows.append(
            f"| {job} | {kind} | {len(ts)} | {sum(t.survived for t in ts)} | {sum(t.files_checked for t in ts)} | "
            f"{sum(len(t.unreadable_after_fault) for t in ts)} | {sum(len(t.mismatched) for t in ts)} | "
            f"{sum(t.stale_temps for t in ts)} | {', '.join(f'{c}×{n}' for c, n in sorted(codes.items(), key=str))} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="faults per job (kinds in turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", nargs="*", default=None, help="train evaluate reproduce report (default: all)")
    parser.add_argument("--kinds", nargs="*", default=None, help=f"{' '.join(KINDS)} (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = run(
        args.trials,
        args.seed,
        scenarios=tuple(args.jobs) if args.jobs else None,
        kinds=tuple(args.kinds) if args.kinds else None,
    )
    print(table(results))
    failed = [t for t in results if not t.survived]
    print(
        f"\n{len(results)} faults injected, {len(results) - len(failed)} survived; "
        f"{time.perf_counter() - t0:.0f} s; python -m tests.fault_injection --trials {args.trials} --seed {args.seed}"
    )
    for t in failed:
        print(
            f"FAILED {t.scenario} {t.kind} {t.moment}: rc {t.fault_rc}->{t.rerun_rc} unreadable "
            f"{t.unreadable_after_fault} differing {t.mismatched} {t.error_line}"
        )
    if args.json:
        args.json.write_text(json.dumps([t.__dict__ | {"survived": t.survived} for t in results], indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
