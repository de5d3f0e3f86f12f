"""The training step with fewer, larger kernels and with deterministic algorithms, against today's default step, on
one device, interleaved, medians of seconds per step and their ratios to the default.

    python bench/bench_fusion.py [--device cpu|cuda] [--models mlp dcgan] [--batch 64] [--rounds 5] [--steps 8]

Variants (each built as the trainer builds it, from the same weights):
  default        today's step: eager modules, Adam ``foreach`` (bit-identical to Adam's per-parameter loop)
  adam-fused     ``adam: fused``: Adam in one kernel per step
  compile        ``compile: true``: G's and D's training passes through torch.compile (inductor)
  compile+fused  both
  deterministic  ``deterministic: true`` on the default step

A compiled variant's warm-up (its compilations) is reported apart and left out of its steps' times.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from xaigan import config, models
from xaigan.train.determinism import deterministic
from xaigan.train.step import gan_step, make_optimizers

VARIANTS = {
    "default": {},
    "adam-fused": {"adam": "fused"},
    "compile": {"compile": "true"},
    "compile+fused": {"compile": "true", "adam": "fused"},
    "deterministic": {"deterministic": True},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Variant:
    """One variant's G, D, optimisers and step, warmed up."""

    def __init__(self, G0, D0, cfg: config.Config, real: torch.Tensor, warmup: int) -> None:
        self.cfg, self.real = cfg, real
        self.G, self.D = copy.deepcopy(G0), copy.deepcopy(D0)
        self.opt_g, self.opt_d = make_optimizers(self.G, self.D, cfg)
        compiled = cfg.compile == "true"
        self.train_G = torch.compile(self.G) if compiled else self.G
        self.train_D = torch.compile(self.D) if compiled else self.D
        t0 = time.perf_counter()
        self.steps(warmup)
        self.warmup_s = time.perf_counter() - t0

    def steps(self, n: int) -> float:
        device = self.real.device
        with deterministic(self.cfg.deterministic):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                gan_step(self.train_G, self.train_D, self.opt_g, self.opt_d, self.real, self.cfg)
            sync(device)
        return (time.perf_counter() - t0) / n


def bench_model(name: str, device: torch.device, batch: int, rounds: int, steps: int) -> None:
    base = {"model": name, "batch_size": batch, "precision": "fp32"}
    torch.manual_seed(0)
    G0, D0 = models.build(name, 1, 32, config.resolve(base).noise_dim)
    G0, D0 = G0.to(device), D0.to(device)
    real = torch.rand(batch, 1, 32, 32, device=device) * 2 - 1
    built = {}
    for label, changes in VARIANTS.items():
        cfg = config.resolve(base, changes)
        built[label] = Variant(G0, D0, cfg, real, warmup=3)
    times: dict[str, list[float]] = {label: [] for label in built}
    for _ in range(rounds):
        for label, variant in built.items():
            times[label].append(variant.steps(steps))
    ref = statistics.median(times["default"])
    print(f"\n{name}, batch {batch}, {device} ({rounds} rounds x {steps} steps, interleaved)")
    print(f"{'variant':15s} {'s/step':>9s} {'ratio':>6s} {'ratio range':>12s} {'warm-up s':>10s}")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{label:15s} {med:9.4f} {med / ref:6.2f} {min(ts) / ref:5.2f}-{max(ts) / ref:<6.2f} "
            f"{built[label].warmup_s:10.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["mlp"])
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device))
    for name in args.models:
        for batch in args.batch:
            bench_model(name, device, batch, args.rounds, args.steps)


if __name__ == "__main__":
    main()
