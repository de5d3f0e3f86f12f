"""How far bf16 explanations (``xai_precision: bf16``) are from fp32 ones on a trained run's D and G.

    python scripts/explain_precision.py runs/fmnist35-ema/saliency/seed_5 --n 32

Explains ``--n`` samples of the run's G (its last checkpoint) with D in fp32 and in bf16, each method on the same
inputs (lime: the same perturbations), and prints the relative L2 distance of the maps and the per-sample
correlations (min and median). deeplift-shap uses the run's first 128 training images as references.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _trained import load_trained

from xaigan import data, explain


def compare(method: str, D: torch.nn.Module, x: torch.Tensor, **kwargs) -> tuple[float, float, float]:
    """(relative L2 distance, min and median per-sample correlation) of bf16 against fp32 maps."""

    def fresh() -> dict:
        return {**kwargs, "generator": torch.Generator().manual_seed(3)} if method == "lime" else kwargs

    a = explain.explain(method, D, x, target="prob", **fresh())
    b = explain.explain(method, D, x, target="prob", precision="bf16", **fresh())
    corr = [float(torch.corrcoef(torch.stack([p, q]))[0, 1]) for p, q in zip(a.flatten(1), b.flatten(1))]
    return float((a - b).norm() / a.norm()), min(corr), float(np.median(corr))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args(argv)
    cfg, state, images, G, D = load_trained(args.run)
    with torch.no_grad():
        x = G(torch.randn(args.n, cfg["noise_dim"], generator=torch.Generator().manual_seed(0)))
    refs = data.to_float(images.images[:128])
    print(f"{args.run}: epoch {state['epoch']}, {args.n} samples\n| method | rel. L2 | corr min | corr median |")
    print("|---|---:|---:|---:|")
    for name, method, kwargs in [
        ("deeplift-shap (128 references)", "deeplift-shap", {"baselines": refs}),
        ("lime (quickshift)", "lime", {"segmentation": "quickshift"}),
        ("lime (grid)", "lime", {"segmentation": "grid"}),
        ("saliency", "saliency", {}),
    ]:
        rel, lo, med = compare(method, D, x, **kwargs)
        print(f"| {name} | {rel:.4f} | {lo:.4f} | {med:.5f} |")


if __name__ == "__main__":
    main()
