"""The cost of the losses and of G's per-sample weights (top-k, acceptance weighting) against the plain step, and
the step time of the conv pairs (dcgan, sngan-small, sngan), each interleaved with its baseline, medians.

    python bench/bench_losses.py [--repeats 7] [--steps 10] [--threads 2] [--batch 64] [--skip-conv]

Part 1 (the paper MLP, 1x32x32): every variant starts each repeat from the same weights, optimiser state and RNG
state; it prints seconds per step and the ratio to the plain bce-smoothed step (top-k and acceptance weighting
should cost at most 1.02x). Part 2: one step of each conv pair at the same batch, ratios to dcgan.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from xaigan import config, models
from xaigan.train.step import gan_step, make_optimizers
from xaigan.train.weights import SampleWeights


def timed(G0, D0, cfg, real, steps, weights=None) -> float:
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    opt_g, opt_d = make_optimizers(G, D, cfg)
    torch.manual_seed(1)
    gan_step(G, D, opt_g, opt_d, real, cfg, weights=weights)  # warm
    start = time.perf_counter()
    for _ in range(steps):
        gan_step(G, D, opt_g, opt_d, real, cfg, weights=weights)
    return (time.perf_counter() - start) / steps


def compare(title: str, variants: dict, repeats: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(repeats + 1):  # the first round warms up
        for name, run in variants.items():
            seconds = run()
            if rep:
                times[name].append(seconds)
    base = statistics.median(next(iter(times.values())))
    print(f"\n{title}\n{'variant':<28} {'s/step':>9} {'ratio':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:9.4f} {med / base:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--skip-conv", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    real = torch.rand(args.batch, 1, 32, 32) * 2 - 1
    base = config.resolve({"model": "mlp"})
    G0, D0 = models.build("mlp", 1, 32, base.noise_dim)
    half = SampleWeights(keep=0.5, accept=0.0, d_output="logit", threshold=0.5)
    accept = SampleWeights(keep=1.0, accept=0.2, d_output="logit", threshold=0.5)
    both = SampleWeights(keep=0.5, accept=0.2, d_output="logit", threshold=0.5)
    mlp = {
        "plain (bce-smoothed)": lambda: timed(G0, D0, base, real, args.steps),
        "ns": lambda: timed(G0, D0, base.replace(loss="ns"), real, args.steps),
        "hinge": lambda: timed(G0, D0, base.replace(loss="hinge"), real, args.steps),
        "top-k (keep 0.5)": lambda: timed(G0, D0, base, real, args.steps, half),
        "accept weight 0.2": lambda: timed(G0, D0, base, real, args.steps, accept),
        "top-k + accept weight": lambda: timed(G0, D0, base, real, args.steps, both),
    }
    compare(f"paper MLP, batch {args.batch}, {args.threads} threads", mlp, args.repeats)
    if args.skip_conv:
        return
    conv = {}
    for name in ("dcgan", "sngan-small", "sngan"):
        cfg = config.resolve({"model": name, "loss": "hinge" if name.startswith("sngan") else "bce-smoothed"})
        G, D = models.build(name, 1, 32, cfg.noise_dim)
        conv[name] = lambda G=G, D=D, cfg=cfg: timed(G, D, cfg, real, max(2, args.steps // 4))
    compare(
        f"conv pairs, batch {args.batch}, {args.threads} threads (ratios to dcgan)", conv, max(2, args.repeats // 2)
    )


if __name__ == "__main__":
    main()
