"""Cost of the xAI-guided GAN step, as a ratio to the plain step, through the trainer's own ``gan_step`` and the
guidance the config builds (issue 10).

Paper MLP G and D, batch 128, Fashion-MNIST test images (random images when not installed). G and D get 30 plain
steps first; every configuration then starts each repeat from that same state and the same RNG state, one after
another (interleaved), and we report the median seconds per step over ``--steps`` steps and the ratio to the plain
step of the same precision. ``--select all`` explains every sample (the worst case); ``fake`` explains those D calls
fake, as in training.

    python bench/bench_guided.py [--repeats 5] [--steps 5] [--precision fp32 bf16] [--select all]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_explain import load_images  # noqa: E402

from xaigan import config, models  # noqa: E402
from xaigan.train.factory import build_guidance  # noqa: E402
from xaigan.train.step import gan_step, make_optimizers  # noqa: E402

BATCH = 128
# name -> config keys (on top of the paper's MLP settings)
CONFIGS = {
    "no xAI": {"xai": "none"},
    "saliency (eval, default)": {"xai": "saliency"},
    "saliency (train, separate passes)": {"xai": "saliency", "explain_mode": "train"},
    "saliency (step, shared pass)": {"xai": "saliency", "explain_mode": "step"},
    "deeplift-shap (16 baselines)": {"xai": "deeplift-shap", "xai_baselines": 16},
    "deeplift-shap (128 baselines)": {"xai": "deeplift-shap", "xai_baselines": 128},
    "lime (100, grid)": {"xai": "lime", "lime_segmentation": "grid"},
    "lime (100, quickshift)": {"xai": "lime", "lime_segmentation": "quickshift"},
    "deeplift-shap (128 baselines), xai_precision bf16": {
        "xai": "deeplift-shap",
        "xai_baselines": 128,
        "xai_precision": "bf16",
    },
    "lime (100, quickshift), xai_precision bf16": {
        "xai": "lime",
        "lime_segmentation": "quickshift",
        "xai_precision": "bf16",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--select", default="all", choices=["all", "fake"])
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, source = load_images(4 * BATCH, force_random=False)
    names = [n for n in CONFIGS if not args.only or n in args.only or n == "no xAI"]
    torch.manual_seed(0)
    base = config.resolve({"model": "mlp", "g_clip": 1.0, "xai_select": args.select, "seed": 0})
    G0, D0 = models.build("mlp", 1, 32, base.noise_dim)
    opt_g, opt_d = make_optimizers(G0, D0, base)
    G0.train(), D0.train()
    for i in range(30):
        gan_step(G0, D0, opt_g, opt_d, images[(i % 4) * BATCH : (i % 4 + 1) * BATCH], base)
    state = copy.deepcopy((G0.state_dict(), D0.state_dict()))

    print(f"images: {source}; select={args.select}; threads={args.threads}; torch {torch.__version__}")
    for precision in args.precision:
        cfgs = {n: base.replace(precision=precision, **CONFIGS[n]) for n in names}
        guides = {n: build_guidance(c, images, None, torch.device("cpu")) for n, c in cfgs.items()}
        times: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.repeats + 1):  # round 0 warms up
            for n in names:
                G, D = copy.deepcopy(G0), copy.deepcopy(D0)
                G.load_state_dict(state[0]), D.load_state_dict(state[1])
                og, od = make_optimizers(G, D, cfgs[n])
                torch.manual_seed(rep)
                t0 = time.perf_counter()
                for s in range(args.steps):
                    gan_step(G, D, og, od, images[(s % 4) * BATCH : (s % 4 + 1) * BATCH], cfgs[n], None, guides[n])
                if rep:
                    times[n].append((time.perf_counter() - t0) / args.steps)
        plain = statistics.median(times["no xAI"])
        print(f"\n{precision}: median s/step over {args.repeats} repeats x {args.steps} steps")
        print(f"| configuration | s/step | ratio to plain {precision} |\n|---|---:|---:|")
        for n in names:
            med = statistics.median(times[n])
            print(f"| {n} | {med:.4f} | {med / plain:.2f}x |")


if __name__ == "__main__":
    main()
