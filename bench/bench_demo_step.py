"""The demo's step against the paper MLP's, on this machine, as the demo's budget sees them (one thread each).

    python bench/bench_demo_step.py [--repeats 5] [--seconds 2] [--side-by-side]

Times, interleaved, the paper MLP's training step at batch 64 (fp32, weight average on) and the demo's step
(``mlp-small``, the same batch; plain and saliency-guided), each as :func:`xaigan.train.timing.time_step` measures
it, and prints each one's median over the repeats and their ratios. ``--side-by-side`` runs two copies of the whole
benchmark at once, one per core, as the demo trains its two runs. The paper MLP's step is the yardstick of
docs/demo.md: 0.055 s on an AMX CPU, 0.17 s on the slowest CPU we met.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from xaigan.cli.demo import DEMO_GRID
from xaigan.config import Config
from xaigan.train.timing import time_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--side-by-side", action="store_true")
    args = ap.parse_args()
    if args.side_by_side:
        argv = [sys.executable, __file__, "--repeats", str(args.repeats), "--seconds", str(args.seconds)]
        procs = [subprocess.Popen(argv) for _ in range(2)]
        sys.exit(max(p.wait() for p in procs))
    base = {k: v for k, v in DEMO_GRID["base"].items() if k in Config.__dataclass_fields__}
    demo = Config(**base)
    variants = {
        "paper mlp, batch 64": (demo.replace(model="mlp", lr_g=2e-4, lr_d=2e-4), False),
        "demo (mlp-small)": (demo, False),
        "demo, saliency-guided": (demo.replace(xai="saliency"), True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (cfg, guided) in variants.items():
            times[name].append(time_step(cfg, guided=guided, seconds=args.seconds, threads=1).seconds)
    paper = statistics.median(times["paper mlp, batch 64"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:24s} {median:.4f} s/step  ({median / paper:.2f}x the paper MLP's)", flush=True)


if __name__ == "__main__":
    main()
