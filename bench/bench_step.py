"""One GAN training step of the paper MLP G and D (batch 128): the step as it was before issue 10, today's default
fp32 step, the opt-in fast modes and the weight average's update (g_ema), from the same state, interleaved, medians.

    python bench/bench_step.py [--repeats 7] [--steps 20] [--threads 2]

"before" is a frozen copy of the step as it stood before issue 10 (G's forward in D's step built a graph, G's step
also computed D's weight gradients, Adam ran its per-parameter loop). Every variant starts each repeat from the same
weights, optimiser state and RNG state; the report gives each variant's median seconds per step and its ratio to
"before", and checks that the default step gives bit-identical weights to "before".
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from xaigan import config, models
from xaigan.train.ema import WeightAverage
from xaigan.train.step import gan_step, make_optimizers


def before_step(G, D, opt_g, opt_d, real, cfg) -> None:
    """The step before issue 10 (logit D, no augmentation, no guidance)."""
    batch = len(real)
    fake = G(torch.randn(batch, cfg.noise_dim)).detach()
    d_real, d_fake = D(real), D(fake)
    loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, cfg.label_real))
    loss_d = loss_d + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, cfg.label_fake))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    fake = G(torch.randn(batch, cfg.noise_dim))
    d_gen = D(fake)
    loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.full_like(d_gen, cfg.g_target))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nn.utils.clip_grad_norm_(G.parameters(), cfg.g_clip)
    opt_g.step()
    loss_d.item(), loss_g.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = config.resolve({"model": "mlp", "g_clip": 1.0})
    G0, D0 = models.build("mlp", 1, 32, cfg.noise_dim)
    real = torch.rand(128, 1, 32, 32) * 2 - 1
    variants = {
        "before": ("before", "fp32"),
        "default fp32": ("gan_step", "fp32"),
        "bf16": ("gan_step", "bf16"),
        "bf16 + g_ema": ("gan_step+ema", "bf16"),  # plus the update of G's weight average (xaigan.train.ema)
    }

    def fresh(precision: str):
        G, D = copy.deepcopy(G0), copy.deepcopy(D0)
        if precision == "before":
            betas = (cfg.beta1, cfg.beta2)
            opts = (
                torch.optim.Adam(G.parameters(), cfg.lr_g, betas),
                torch.optim.Adam(D.parameters(), cfg.lr_d, betas),
            )
        else:
            opts = make_optimizers(G, D, cfg.replace(precision=precision))
        return G, D, opts

    times: dict[str, list[float]] = {name: [] for name in variants}
    finals = {}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name, (kind, precision) in variants.items():
            G, D, (opt_g, opt_d) = fresh("before" if kind == "before" else precision)
            ema = WeightAverage(G, 0.999) if kind == "gan_step+ema" else None
            step_cfg = cfg.replace(precision=precision)
            torch.manual_seed(rep)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                if kind == "before":
                    before_step(G, D, opt_g, opt_d, real, cfg)
                else:
                    gan_step(G, D, opt_g, opt_d, real, step_cfg)
                    if ema is not None:
                        ema.update(G)
            if rep:
                times[name].append((time.perf_counter() - t0) / args.steps)
            finals[name] = [p.detach().clone() for p in [*G.parameters(), *D.parameters()]]
    base = statistics.median(times["before"])
    identical = all(torch.equal(a, b) for a, b in zip(finals["before"], finals["default fp32"]))
    print(f"paper MLP G and D, batch 128, {args.steps} steps x {args.repeats} repeats, {args.threads} threads")
    print("| step | median s/step | ratio to before | per-repeat s/step |")
    print("|---|---:|---:|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.4f} | {med / base:.2f}× | {', '.join(f'{v:.4f}' for v in values)} |")
    print(f"default fp32 weights after {args.steps} steps bit-identical to before: {identical}")


if __name__ == "__main__":
    main()
