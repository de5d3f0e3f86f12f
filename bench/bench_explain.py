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
        [--device cpu|cuda] [--model mlp|dcgan] [--precision fp32|bf16] [--only NAME ...] [--setup-steps 20]

``--model dcgan``: the paper's DCGAN G and D (``models.build("dcgan", 1, 32, 100)``, BatchNorm in both) instead of
the MLP. ``--device cuda``: everything on the GPU (G, D, images, baselines, noise; the original's LIME
``classifier_fn`` moves each perturbed batch there and back, as the original did); every timing is bracketed by
``torch.cuda.synchronize()``. ``--precision bf16``: our step as the trainer runs it with ``precision: bf16`` and
``xai_precision: bf16`` (G's and D's training passes under ``torch.autocast`` in bf16, losses in fp32, fused Adam,
the explainer's products in bf16); the original's loops stay in fp32, as the original code ran. ``--only``
restricts the configurations (the plain step is always timed: it is the reference), e.g. on a GPU

    python bench/bench_explain.py --device cuda --model dcgan --precision bf16 --original-samples 8 \\
        --only saliency "deeplift-shap (128 baselines)" "lime (100, quickshift)"

A configuration whose explainer needs a package that is not installed (captum, lime) is reported as n/a.
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
NOISE_DIM = 100
MODEL_LABELS = {"mlp": "paper MLP GAN", "dcgan": "paper DCGAN"}

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
# ours, batched: name -> (explain method, kwargs factory)
OURS = {
    "saliency": ("saliency", lambda refs: {}),
    "deeplift-shap (128 baselines)": ("deeplift-shap", lambda refs: {"baselines": refs}),
    "lime (100, quickshift)": ("lime", lambda refs: {"n_samples": 100}),
    "lime (100, grid)": ("lime", lambda refs: {"n_samples": 100, "segmentation": "grid"}),
}
# (original's loop, ours, target speed-up)
COMPARISONS = [
    ("saliency", "saliency", 10),
    ("deeplift-shap (128 baselines)", "deeplift-shap (128 baselines)", 5),
    ("lime (100, quickshift)", "lime (100, quickshift)", 10),
    ("lime (100, quickshift)", "lime (100, grid)", None),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_images(n: int, force_random: bool) -> tuple[torch.Tensor, str]:
    if FASHION.exists() and not force_random:
        with gzip.open(FASHION) as f:
            raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
        x = torch.from_numpy(raw.astype(np.float32) / 255.0)
        x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
        return x * 2 - 1, "Fashion-MNIST"
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1, "random"


class Setup:
    def __init__(self, real: torch.Tensor, model: str = "mlp", precision: str = "fp32", plain_steps: int = 20):
        device = real.device
        self.precision = precision
        torch.manual_seed(0)
        G, D = models.build(model, channels=1, image_size=32, noise_dim=NOISE_DIM)
        self.G, self.D = G.to(device), D.to(device)
        # bf16: fused Adam, as the trainer's adam: auto picks with bf16; fp32: torch's default, as before
        fused = {"fused": True} if precision == "bf16" else {}
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.99), **fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.99), **fused)
        self.joint_d = precision == "bf16" and not explain.has_batchnorm(self.D)  # as the trainer's bf16 D step
        for i in range(plain_steps):  # a few plain steps: non-trivial D, warm Adam state
            z_d, z_g = torch.randn(BATCH, NOISE_DIM, device=device), torch.randn(BATCH, NOISE_DIM, device=device)
            self.step(real[(i % 2) * BATCH : (i % 2 + 1) * BATCH], z_d, z_g)
        self.state = copy.deepcopy(
            (self.G.state_dict(), self.D.state_dict(), self.opt_g.state_dict(), self.opt_d.state_dict())
        )

    def restore(self) -> None:
        g, d, og, od = self.state
        self.G.load_state_dict(g)
        self.D.load_state_dict(d)
        self.opt_g.load_state_dict(copy.deepcopy(og))
        self.opt_d.load_state_dict(copy.deepcopy(od))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.D_device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def D_device(self) -> torch.device:
        return next(self.D.parameters()).device

    def step(self, real, z_d, z_g, guide: guidance.XAIGuidance | None = None) -> None:
        G, D = self.G, self.D
        if self.precision == "fp32":  # the step as this benchmark has always run it
            fake = G(z_d).detach()
            d_real, d_fake = D(real), D(fake)
        else:  # the trainer's bf16 step: training passes under autocast, losses in fp32
            with torch.no_grad(), self.autocast():
                fake = G(z_d)
            with self.autocast():
                if self.joint_d:  # one pass of twice the rows (no BatchNorm in D)
                    d_real, d_fake = D(torch.cat([real, fake.to(real.dtype)])).float().split(len(real))
                else:
                    d_real, d_fake = D(real).float(), D(fake).float()
        loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, 0.1))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        with self.autocast():
            fake = G(z_g)
        if guide is not None:
            fake = guide(fake.float(), D)  # outside autocast, as the trainer calls it (xai_precision decides)
        with self.autocast():
            out = D(fake)
        out = out.float()
        loss_g = F.binary_cross_entropy_with_logits(out, torch.full_like(out, 0.9))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()


def missing_package(exc: BaseException) -> str | None:
    """The package an explainer needed and did not find, else None."""
    if isinstance(exc, ModuleNotFoundError):
        return (exc.name or "?").split(".")[0]
    return None


def time_steps(setup: Setup, real, refs, repeats: int, names: list[str]) -> tuple[dict, dict, dict[str, str]]:
    device = real.device
    guides = {
        name: guidance.XAIGuidance(
            CONFIGS[name][0], select="all", precision=setup.precision, explain_kwargs=CONFIGS[name][1](refs)
        )
        for name in names
    }
    guides = {"no xAI": None, **guides}
    times: dict[str, list[float]] = {name: [] for name in guides}
    explain_s: dict[str, list[float]] = {name: [] for name in guides}
    missing: dict[str, str] = {}
    for r in range(repeats + 1):  # repeat 0 is warm-up
        z_d, z_g = torch.randn(BATCH, NOISE_DIM, device=device), torch.randn(BATCH, NOISE_DIM, device=device)
        for name, guide in guides.items():
            if name in missing:
                continue
            setup.restore()
            sync(device)
            t0 = time.perf_counter()
            try:
                setup.step(real[:BATCH], z_d, z_g, guide)
            except ImportError as exc:
                if missing_package(exc) is None:
                    raise
                missing[name] = missing_package(exc)
                continue
            sync(device)
            dt = time.perf_counter() - t0
            if r > 0:
                times[name].append(dt)
                explain_s[name].append(guide.stats["seconds"] if guide else 0.0)
    return times, explain_s, missing


def time_original(D: nn.Module, x: torch.Tensor, refs: torch.Tensor, n: int, names: set[str]) -> dict[str, float]:
    """Seconds for 128 samples, measured on the first ``n`` with the original's per-sample loops, scaled (in fp32, on
    D's device); a loop whose package is missing is left out."""
    import warnings

    warnings.filterwarnings("ignore")
    device = x.device
    model = explain.ExplainedModel(D)  # sigmoid(D): the original D ended in a Sigmoid
    scale = BATCH / n
    out = {}
    with explain.protected(model, "eval"):
        with contextlib.suppress(ImportError):
            from captum.attr import DeepLiftShap, Saliency

            if "saliency" in names:
                sync(device)
                t0 = time.perf_counter()
                for i in range(n):
                    Saliency(model).attribute(x[i : i + 1])
                sync(device)
                out["saliency"] = (time.perf_counter() - t0) * scale
            if "deeplift-shap (128 baselines)" in names:
                sync(device)
                t0 = time.perf_counter()
                for i in range(n):
                    DeepLiftShap(model).attribute(x[i : i + 1], refs, target=0)
                sync(device)
                out["deeplift-shap (128 baselines)"] = (time.perf_counter() - t0) * scale

        if "lime (100, quickshift)" not in names:
            return out
        try:
            from lime import lime_image
        except ImportError:
            return out

        def batch_predict(images):  # the original's classifier_fn: grey, D, softmax over the single column
            grey = torch.tensor(np.mean(images, axis=3), dtype=torch.float32).unsqueeze(1).to(device)
            with torch.no_grad():
                return F.softmax(model(grey), dim=1).cpu().numpy()

        explainer = lime_image.LimeImageExplainer()
        sync(device)
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):  # lime's tqdm bar
            for i in range(n):
                img = x[i, 0].cpu().numpy().astype(np.double)
                exp = explainer.explain_instance(img, batch_predict, num_samples=100)
                exp.get_image_and_mask(exp.top_labels[0], positive_only=False, negative_only=False)
        out["lime (100, quickshift)"] = (time.perf_counter() - t0) * scale
    return out


def time_ours(
    D: nn.Module, x: torch.Tensor, refs: torch.Tensor, names: list[str], precision: str = "fp32", repeats: int = 3
) -> dict[str, float]:
    device = x.device
    out = {}
    for name in names:
        method, kw = OURS[name]
        ts = []
        try:
            if device.type != "cpu":  # a warm-up call first: the GPU's first kernels and allocations
                explain.explain(method, D, x, target="prob", precision=precision, **kw(refs))
            for _ in range(repeats):
                sync(device)
                t0 = time.perf_counter()
                explain.explain(method, D, x, target="prob", precision=precision, **kw(refs))
                sync(device)
                ts.append(time.perf_counter() - t0)
        except ImportError as exc:
            if missing_package(exc) is None:
                raise
            continue
        out[name] = statistics.median(ts)
    return out


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f", {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return f", {device}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--original-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--random", action="store_true", help="random images even if Fashion-MNIST is installed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model", default="mlp", choices=sorted(MODEL_LABELS))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="our step's arithmetic")
    parser.add_argument("--setup-steps", type=int, default=20, help="plain steps before timing (smoke tests: 1)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(CONFIGS), help="configurations to time")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available (torch {torch.__version__})")
    torch.set_num_threads(args.threads)
    names = [name for name in CONFIGS if args.only is None or name in args.only]
    images, source = load_images(3 * BATCH, args.random)
    images = images.to(device)
    real, refs = images[: 2 * BATCH], images[2 * BATCH :]
    setup = Setup(real, args.model, args.precision, args.setup_steps)
    extra = describe_device(device)
    if args.precision == "bf16":
        extra += ", our step in bf16 (autocast), the original's loops in fp32"
    print(
        f"# xAI guidance cost: {MODEL_LABELS[args.model]}, batch {BATCH}, {source}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}{extra}\n"
    )
    t_start = time.perf_counter()
    times, explain_s, missing = time_steps(setup, real, refs, args.repeats, names)
    base = statistics.median(times["no xAI"])
    print(f"Seconds per training step (median of {args.repeats}; every sample explained, select='all'):\n")
    print("| configuration | step s | explain s | ratio to no xAI | target | ok |")
    print("|---|---:|---:|---:|---:|:-:|")
    for name, ts in times.items():
        if name in missing:
            print(f"| {name} | n/a | n/a | n/a (needs {missing[name]}) |  |  |")
            continue
        med = statistics.median(ts)
        target = CONFIGS[name][2] if name in CONFIGS else None
        ok = "" if target is None else ("yes" if med / base <= target else "NO")
        tgt = "" if target is None else f"<= {target:g}x"
        print(f"| {name} | {med:.3f} | {statistics.median(explain_s[name]):.3f} | {med / base:.2f}x | {tgt} | {ok} |")

    rows = [(o, m, target) for o, m, target in COMPARISONS if m in names]
    if rows:
        setup.restore()
        D = setup.D
        z = torch.randn(BATCH, NOISE_DIM, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():  # BatchNorm G in train mode, as the step makes fakes
            x = setup.G(z).detach()
        ours = time_ours(D, x, refs, [m for _, m, _ in rows], args.precision)
        orig = time_original(D, x, refs, args.original_samples, {o for o, _, _ in rows})
        print(
            f"\nExplaining {BATCH} generated images: the original's per-sample loops (timed on "
            f"{args.original_samples} samples, scaled to {BATCH}) vs ours (one batched call, median of 3):\n"
        )
        print("| method | original s | ours s | speed-up | target | ok |")
        print("|---|---:|---:|---:|---:|:-:|")
        for o, m, target in rows:
            label = m if o == m else f"{m} vs original {o}"
            if o not in orig or m not in ours:  # its package is not installed
                o_s = f"{orig[o]:.2f}" if o in orig else "n/a"
                m_s = f"{ours[m]:.3f}" if m in ours else "n/a"
                print(f"| {label} | {o_s} | {m_s} | n/a |  |  |")
                continue
            speed = orig[o] / ours[m]
            ok = "" if target is None else ("yes" if speed >= target else "NO")
            tgt = "" if target is None else f">= {target}x"
            print(f"| {label} | {orig[o]:.2f} | {ours[m]:.3f} | {speed:.1f}x | {tgt} | {ok} |")
    print(f"\n(bench wall time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
