"""Measure how DCGAN's D judges and explains G's samples in eval mode (BatchNorm running statistics) versus train
mode (the batch's own statistics, which is how D saw them in the G step whose gradient the guidance reshapes).

    python scripts/bn_explain_mode.py --epochs 6 --seeds 0 1

For each finished epoch, on a fresh batch of 128 fakes and one of 128 reals: how often eval mode and batch mode
(BatchNorm with the batch's statistics, frozen) reject the same fakes as train mode (D(x) < 0.5), the mean
probability of real in each mode, and the median per-sample Pearson correlation of each mode's saliency maps
(|dD/dx|) with train mode's. Train mode on an all-fake batch is what the G step computed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from xaigan import config, data, explain, train
from xaigan.explain import protected


def measure(tr: train.Trainer, n: int = 128) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1234 + tr.epoch)
    z = torch.randn(n, tr.cfg.noise_dim, generator=gen)
    idx = torch.randperm(len(tr.data.images), generator=gen)[:n]
    real = data.to_float(tr.data.images[idx])
    with torch.no_grad():
        fake = tr.G.eval()(z)
    tr.G.train()
    out: dict[str, float] = {}
    rejected = {}
    for mode in ("train", "eval", "batch"):
        with torch.no_grad():
            with protected(tr.D, mode, batch=fake):
                p_fake = torch.sigmoid(tr.D(fake)).reshape(-1)
            with protected(tr.D, mode, batch=real):
                out[f"p_real_{mode}"] = float(torch.sigmoid(tr.D(real)).mean())
        out[f"p_fake_{mode}"] = float(p_fake.mean())
        rejected[mode] = p_fake < 0.5
    for mode in ("eval", "batch"):
        out[f"agree_{mode}"] = float((rejected[mode] == rejected["train"]).float().mean())
    maps = {
        m: explain.explain("saliency", tr.D, fake, mode=m, target="prob", d_output="logit").reshape(n, -1)
        for m in ("train", "eval", "batch")
    }
    for mode in ("eval", "batch"):
        a, b = maps["train"], maps[mode]
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
        out[f"corr_{mode}"] = float(corr.median())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        cfg = config.resolve(
            {
                "dataset": args.dataset,
                "model": "dcgan",
                "epochs": args.epochs,
                "seed": seed,
                "progress": False,
                "tensorboard": False,
                "sample_every": 1000,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            tr = train.from_config(cfg, Path(tmp) / "run")
            tr.callbacks.append(lambda t, epoch, s=seed: rows.append({"seed": s, "epoch": epoch, **measure(t)}))
            tr.fit()
        print(f"seed {seed} done", flush=True)
    if args.out:  # before printing: a long measurement must not be lost to a formatting slip
        args.out.write_text(json.dumps(rows, indent=2))
    cols = ["seed", "epoch", "agree_eval", "agree_batch", "p_fake_train", "p_fake_eval", "p_fake_batch"]
    cols += ["p_real_train", "p_real_eval", "p_real_batch", "corr_eval", "corr_batch"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
