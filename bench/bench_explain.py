"""Cost of xAI guidance: seconds per GAN training step with each explainer, as a ratio to a plain step, and the
speed-up of our batched explainers over the original xAI-GAN's per-sample loops.

Paper MLP G and D (``xaigan.models.build("mlp")``), batch 128, 1x32x32 Fashion-MNIST (IDX test images, 28->32
bilinear, [-1, 1]; random images when not installed), BCE-with-logits with labels 0.9/0.1, Adam 2e-4 (0.5, 0.99).
D and G get a few plain steps first. Each repeat restores the same G/D/optimiser state and noise for every
configuration and runs them one after another (interleaved, so machine noise hits all alike); we report the
median. Guided steps use ``XAIGuidance(..., select="all")``: every sample explained, the worst case.

The "original" timings re-create the original code's loops (captum ``Saliency``/``DeepLiftShap`` called once per
sample; the ``lime`` package's ``LimeImageExplainer.explain_instance`` per sample with ``num_samples=100``, its
default quickshift and the original's ``classifier_fn``) on the first ``--original-samples`` images, scaled to
128; ours explain all 128 in one call.

    python bench/bench_explain.py [--repeats 7] [--original-samples 16] [--threads 2] [--random]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xaigan import explain, guidance, models

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
BATCH = 128

# name -> (XAIGuidance method, explain kwargs factory, target ratio to a plain step)
CONFIGS = {
    "saliency": ("saliency", lambda refs: {}, 1.25),
    "input-x-gradient": ("input-x-gradient", lambda refs: {}, None),
    "smoothgrad (16)": ("smoothgrad", lambda refs: {"nt_samples": 16}, None),
    "integrated-gradients (16)": ("integrated-gradients", lambda refs: {"n_steps": 16}, 2.5),
    "deeplift": ("deeplift", lambda refs: {}, None),
    "deeplift-shap (16 baselines)": ("deeplift-shap", lambda refs: {"baselines": refs[:16]}, 3.0),
    "deeplift-shap (128 baselines)": ("deeplift-shap", lambda refs: {"baselines": refs}, None),
    "lime (100, grid)": ("lime", lambda refs: {"n_samples": 100, "segmentation": "grid"}, 5.0),
    "lime (100, quickshift)": ("lime", lambda refs: {"n_samples": 100, "segmentation": "quickshift"}, 15.0),
}


def load_images(n: int, force_random: bool) -> tuple[torch.Tensor, str]:
    if FASHION.exists() and not force_random:
        with gzip.open(FASHION) as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
        x = torch.from_numpy(raw.astype(np.float32) / 255.0)
        x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
        return x * 2 - 1, "Fashion-MNIST"
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1, "random"


class Setup:
    def __init__(self, real: torch.Tensor):
        torch.manual_seed(0)
        self.G, self.D = models.build("mlp", channels=1, image_size=32)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.99))
        for i in range(20):  # a few plain steps: non-trivial D, warm Adam state
            self.step(real[(i % 2) * BATCH : (i % 2 + 1) * BATCH], torch.randn(BATCH, 100), torch.randn(BATCH, 100))
        self.state = copy.deepcopy(
            (self.G.state_dict(), self.D.state_dict(), self.opt_g.state_dict(), self.opt_d.state_dict())
        )

    def restore(self) -> None:
        g, d, og, od = self.state
        self.G.load_state_dict(g)
        self.D.load_state_dict(d)
        self.opt_g.load_state_dict(copy.deepcopy(og))
        self.opt_d.load_state_dict(copy.deepcopy(od))

    def step(self, real, z_d, z_g, guide: guidance.XAIGuidance | None = None) -> None:
        G, D = self.G, self.D
        fake = G(z_d).detach()
        d_real, d_fake = D(real), D(fake)
        loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, 0.1))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        fake = G(z_g)
        if guide is not None:
            fake = guide(fake, D)
        out = D(fake)
        loss_g = F.binary_cross_entropy_with_logits(out, torch.full_like(out, 0.9))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()


def time_steps(setup: Setup, real, refs, repeats: int) -> dict[str, list[float]]:
    guides = {
        name: guidance.XAIGuidance(m, select="all", explain_kwargs=kw(refs)) for name, (m, kw, _) in CONFIGS.items()
    }
    guides = {"no xAI": None, **guides}
    times: dict[str, list[float]] = {name: [] for name in guides}
    explain_s: dict[str, list[float]] = {name: [] for name in guides}
    for r in range(repeats + 1):  # repeat 0 is warm-up
        z_d, z_g = torch.randn(BATCH, 100), torch.randn(BATCH, 100)
        for name, guide in guides.items():
            setup.restore()
            t0 = time.perf_counter()
            setup.step(real[:BATCH], z_d, z_g, guide)
            dt = time.perf_counter() - t0
            if r > 0:
                times[name].append(dt)
                explain_s[name].append(guide.stats["seconds"] if guide else 0.0)
    return times, explain_s


def time_original(D: nn.Module, x: torch.Tensor, refs: torch.Tensor, n: int) -> dict[str, float]:
    """Seconds for 128 samples, measured on the first ``n`` with the original's per-sample loops, scaled."""
    import warnings

    from captum.attr import DeepLiftShap, Saliency
    from lime import lime_image

    warnings.filterwarnings("ignore")
    model = explain.ExplainedModel(D)  # sigmoid(D): the original D ended in a Sigmoid
    scale = BATCH / n
    out = {}
    with explain.protected(model, "eval"):
        t0 = time.perf_counter()
        for i in range(n):
            Saliency(model).attribute(x[i : i + 1])
        out["saliency"] = (time.perf_counter() - t0) * scale
        t0 = time.perf_counter()
        for i in range(n):
            DeepLiftShap(model).attribute(x[i : i + 1], refs, target=0)
        out["deeplift-shap (128 baselines)"] = (time.perf_counter() - t0) * scale

        def batch_predict(images):  # the original's classifier_fn: grey, D, softmax over the single column
            grey = torch.tensor(np.mean(images, axis=3), dtype=torch.float32).unsqueeze(1)
            with torch.no_grad():
                return F.softmax(model(grey), dim=1).numpy()

        explainer = lime_image.LimeImageExplainer()
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # lime's tqdm bar
            for i in range(n):
                img = x[i, 0].numpy().astype(np.double)
                exp = explainer.explain_instance(img, batch_predict, num_samples=100)
                exp.get_image_and_mask(exp.top_labels[0], positive_only=False, negative_only=False)
        out["lime (100, quickshift)"] = (time.perf_counter() - t0) * scale
    return out


def time_ours(D: nn.Module, x: torch.Tensor, refs: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    jobs = {
        "saliency": ("saliency", {}),
        "deeplift-shap (128 baselines)": ("deeplift-shap", {"baselines": refs}),
        "lime (100, quickshift)": ("lime", {"n_samples": 100}),
        "lime (100, grid)": ("lime", {"n_samples": 100, "segmentation": "grid"}),
    }
    out = {}
    for name, (method, kw) in jobs.items():
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            explain.explain(method, D, x, target="prob", **kw)
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--original-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random", action="store_true", help="random images even if Fashion-MNIST is installed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, source = load_images(3 * BATCH, args.random)
    real, refs = images[: 2 * BATCH], images[2 * BATCH :]
    setup = Setup(real)
    print(
        f"# xAI guidance cost: paper MLP GAN, batch {BATCH}, {source}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}\n"
    )
    t_start = time.perf_counter()
    times, explain_s = time_steps(setup, real, refs, args.repeats)
    base = statistics.median(times["no xAI"])
    print(f"Seconds per training step (median of {args.repeats}; every sample explained, select='all'):\n")
    print("| configuration | step s | explain s | ratio to no xAI | target | ok |")
    print("|---|---:|---:|---:|---:|:-:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        target = CONFIGS[name][2] if name in CONFIGS else None
        ok = "" if target is None else ("yes" if med / base <= target else "NO")
        tgt = "" if target is None else f"<= {target:g}x"
        print(f"| {name} | {med:.3f} | {statistics.median(explain_s[name]):.3f} | {med / base:.2f}x | {tgt} | {ok} |")

    setup.restore()
    D = setup.D
    x = setup.G(torch.randn(BATCH, 100, generator=torch.Generator().manual_seed(1))).detach()
    ours = time_ours(D, x, refs)
    orig = time_original(D, x, refs, args.original_samples)
    print(
        f"\nExplaining {BATCH} generated images: the original's per-sample loops (timed on "
        f"{args.original_samples} samples, scaled to {BATCH}) vs ours (one batched call, median of 3):\n"
    )
    print("| method | original s | ours s | speed-up | target | ok |")
    print("|---|---:|---:|---:|---:|:-:|")
    rows = [
        ("saliency", "saliency", 10),
        ("deeplift-shap (128 baselines)", "deeplift-shap (128 baselines)", 5),
        ("lime (100, quickshift)", "lime (100, quickshift)", 10),
        ("lime (100, quickshift)", "lime (100, grid)", None),
    ]
    for o, m, target in rows:
        speed = orig[o] / ours[m]
        ok = "" if target is None else ("yes" if speed >= target else "NO")
        label = m if o == m else f"{m} vs original {o}"
        tgt = "" if target is None else f">= {target}x"
        print(f"| {label} | {orig[o]:.2f} | {ours[m]:.3f} | {speed:.1f}x | {tgt} | {ok} |")
    print(f"\n(bench wall time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
