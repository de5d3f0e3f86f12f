"""One run on N processes (``xaigan train --nproc N``, DistributedDataParallel over gloo on CPU) against one process
with N threads, side by side (issue 12).

The same short run (paper MLP, Fashion-MNIST 35% or the offline MNIST subset, ``--epochs``) is trained alternately
each way, ``--repeats`` times; we report the median of each run's median logged step time and the ratio. Each
process of the distributed run has one thread, the single process all of them. Step times exclude start-up.

    python bench/bench_distributed.py [--nproc 2] [--repeats 3] [--epochs 2] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(out: Path, args: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(
        [sys.executable, "-m", "xaigan", "train", *args, "--out", str(out)], env=env, check=True, capture_output=True
    )
    times = [
        json.loads(line)["sec_per_step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if '"sec_per_step"' in line
    ]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--dataset", default="fashion-mnist")
    opts = parser.parse_args()
    common = ["--dataset", opts.dataset, "--model", "mlp", "--epochs", str(opts.epochs), "--quiet"]
    common += ["--set", "fraction=0.35", "--set", "tensorboard=false", "--set", f"precision={opts.precision}"]
    common += ["--set", "log_every=5", "--set", "checkpoint_every=100", "--set", "sample_every=100"]
    one, many = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.repeats):
            one.append(_run(Path(tmp) / f"one{i}", common, threads=opts.nproc))
            many.append(_run(Path(tmp) / f"many{i}", [*common, "--nproc", str(opts.nproc)], threads=1))
            print(
                f"repeat {i}: 1 process x {opts.nproc} threads {one[-1]:.4f} s/step, "
                f"{opts.nproc} processes x 1 thread {many[-1]:.4f} s/step",
                flush=True,
            )
    a, b = statistics.median(one), statistics.median(many)
    print(f"| setting | s/step (median) | ratio |\n|---|---|---|\n| 1 process, {opts.nproc} threads | {a:.4f} | 1× |")
    print(f"| {opts.nproc} processes (DDP, gloo), 1 thread each | {b:.4f} | {b / a:.2f}× |")


if __name__ == "__main__":
    main()
