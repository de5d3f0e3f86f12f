"""Where one GAN training step's time goes: ``torch.profiler`` over plain (and optionally guided) steps of the paper
MLP G and D, batch 128, grouped into matmul, elementwise, optimiser, autograd engine and the rest (Python, framework).

    python bench/profile_step.py [--steps 30] [--threads 2] [--xai saliency] [--fast]

Operators are attributed by their self CPU time (time in the operator itself, not its children), so the groups
add up to the profiled time; "unattributed" is the wall time no operator accounts for (Python, the dispatcher
between operators, allocation).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from xaigan import config, models
from xaigan.guidance import XAIGuidance
from xaigan.train.step import gan_step, make_optimizers

GROUPS = {
    "matmul (addmm/mm/bmm)": ("addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_addmm"),
    "optimiser (Adam)": (
        "adam",
        "_foreach",
        "aten::lerp",
        "aten::addcmul",
        "aten::addcdiv",
        "aten::sqrt",
        "aten::_fused_adam",
    ),
    "dropout / random": ("bernoulli", "dropout", "aten::normal", "aten::randn", "aten::uniform"),
    "activations (LeakyReLU/Tanh/sigmoid)": ("leaky_relu", "tanh", "sigmoid"),
    "loss (BCE)": ("binary_cross_entropy",),
    "autograd engine / accumulate": ("autograd::engine", "AccumulateGrad", "aten::add_"),
    "zero_grad / clip / copies": (
        "aten::zero_",
        "aten::fill_",
        "aten::copy_",
        "aten::clone",
        "aten::norm",
        "aten::linalg_vector_norm",
        "aten::clamp",
        "aten::_foreach_norm",
    ),
}


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, keys in GROUPS.items():
        if any(k.lower() in lowered for k in keys):
            return group
    return "other operators"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--xai", default="none")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = config.resolve({"model": "mlp"}, config.parse_assignments(args.set))
    G, D = models.build("mlp", 1, 32, cfg.noise_dim)
    opt_g, opt_d = make_optimizers(G, D, cfg)
    real = torch.rand(128, 1, 32, 32) * 2 - 1
    guide = None
    if args.xai != "none":
        guide = XAIGuidance(args.xai, select="all", d_output="logit")
    for _ in range(10):  # warm-up
        gan_step(G, D, opt_g, opt_d, real, cfg, None, guide)
    plain = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        gan_step(G, D, opt_g, opt_d, real, cfg, None, guide)
        plain.append(time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            gan_step(G, D, opt_g, opt_d, real, cfg, None, guide)
        wall = (time.perf_counter() - t0) / args.steps
    by_group: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        by_group[group_of(event.key)] += event.self_cpu_time_total / 1e6 / args.steps
        by_op[event.key] += event.self_cpu_time_total / 1e6 / args.steps
    attributed = sum(by_group.values())
    print(
        f"step without profiler: median {statistics.median(plain):.4f} s; with profiler {wall:.4f} s "
        f"({args.threads} threads, xai={args.xai}, batch 128)"
    )
    print("| part | s/step | share |")
    print("|---|---:|---:|")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {seconds:.4f} | {100 * seconds / wall:.0f}% |")
    print(
        f"| unattributed (Python, dispatch, allocation) | {max(wall - attributed, 0):.4f} | "
        f"{100 * max(wall - attributed, 0) / wall:.0f}% |"
    )
    print("\ntop operators (self time):")
    for name, seconds in sorted(by_op.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {name:45s} {seconds * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
