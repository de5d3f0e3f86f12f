"""Where a trained D's saliency (or another explanation's absolute value) falls: on the garment, or on the background.

    python scripts/saliency_focus.py runs/fmnist35-ema/saliency/seed_0 [more runs...] --n 512

For each run's last checkpoint, explains ``--n`` samples of its G (and as many of its real training images) with
the guidance's saliency (``|d P(real) / d pixel|``, D in eval mode) or another ``--method``, and prints what share
of the saliency falls on the object's pixels (brighter than -0.8 on the [-1, 1] scale; the background is -1) against
the share of the image those pixels cover, the share held by the top 10% of pixels (0.10 if the map were flat), and
the correlation of each map with itself shifted by one pixel (0 for maps without spatial structure). A D that looks
at the garment puts more than its area's share there; one whose maps are noise puts about its area's share. The last
row of each run gives the same numbers for maps of independent |N(0, 1)| noise on the same images, the reference
for "no structure".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _trained import load_trained

from xaigan import data, explain
from xaigan.train.factory import baseline_batch

OBJECT = -0.8  # a pixel brighter than this (on [-1, 1]) belongs to the object


def focus(maps: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """Medians over the samples of: the object's share of the pixels, its share of the saliency ``maps``, the share of
    the saliency in the top 10% of each map's pixels, and each map's correlation with its one-pixel shift."""
    a, b = maps[..., :, 1:].flatten(1), maps[..., :, :-1].flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    shift = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    maps = maps.flatten(1)
    obj = (x.flatten(1) > OBJECT).float()
    mass = maps / maps.sum(1, keepdim=True).clamp_min(1e-30)
    k = max(1, maps.shape[1] // 10)
    top = mass.topk(k, dim=1).values.sum(1)
    return {
        "area": float(obj.mean(1).median()),
        "saliency on object": float((mass * obj).sum(1).median()),
        "top 10% share": float(top.median()),
        "neighbour correlation": float(shift.median()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument(
        "--method",
        default="saliency",
        choices=("saliency", "integrated-gradients-real", "deeplift-shap", "lime"),
        help="the explainer (integrated-gradients-real, deeplift-shap: from 128 of the run's real images, as the "
        "guidance draws them; lime: the guidance's default, quickshift segments)",
    )
    parser.add_argument(
        "--lime-fill",
        default="segment-mean",
        choices=("segment-mean", "mean", "grey", "black"),
        help="with --method lime: what a switched-off superpixel shows",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here, with the command's settings")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for path in args.runs:
        cfg, state, images, G, D = load_trained(path)
        with torch.no_grad():
            fake = G(torch.randn(args.n, cfg["noise_dim"], generator=torch.Generator().manual_seed(0)))
        real = data.to_float(images.images[: args.n])
        kwargs = {}
        if args.method in ("integrated-gradients-real", "deeplift-shap"):
            kwargs = {"baselines": baseline_batch(images.images, 128, cfg["seed"], torch.device("cpu"))}
        elif args.method == "lime":
            kwargs = {"fill": args.lime_fill, "generator": torch.Generator().manual_seed(0)}
        for kind, x in (("generated", fake), ("real", real)):
            maps = explain.explain(args.method, D, x, target="prob", **kwargs).abs()
            rows.append((path, state["epoch"], kind, focus(maps, x)))
        noise = torch.randn(fake.shape, generator=torch.Generator().manual_seed(1)).abs()
        rows.append((path, state["epoch"], "generated, |noise| maps", focus(noise, fake)))
    print(
        "| run | epoch | images | object's share of the pixels | of the saliency | top 10% of pixels' share "
        "| neighbour correlation |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for path, epoch, kind, f in rows:
        print(
            f"| {path} | {epoch} | {kind} | {f['area']:.3f} | {f['saliency on object']:.3f} | {f['top 10% share']:.3f} "
            f"| {f['neighbour correlation']:.3f} |"
        )
    summary = {}
    for kind in ("generated", "real"):
        ratio = [f["saliency on object"] / f["area"] for _, _, k, f in rows if k == kind]
        summary[kind] = float(np.median(ratio))
        print(f"{kind}: saliency on the object / its area, median over runs {summary[kind]:.2f}")
    if args.json:
        rows_out = [{"run": p, "epoch": e, "images": k, **f} for p, e, k, f in rows]
        settings = {"lime_fill": args.lime_fill} if args.method == "lime" else {}
        out = {
            "method": args.method,
            **settings,
            "n": args.n,
            "rows": rows_out,
            "object_share_over_area_median": summary,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
