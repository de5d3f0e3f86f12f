"""Validate a feature extractor for FID / KID / precision / recall with the published protocol (issue 11).

    python scripts/validate_metrics.py [--dataset fashion-mnist] [--n 10000] [--generators DIR ...] [--json F]

* real vs real: the train split against the test split (FID near 0, precision and recall near 1);
* graded corruptions of the test split: Gaussian noise, Gaussian blur, mode dropping (only the first k classes,
  resampled to n images: recall must fall, precision must not) and less variety within the classes (n images made
  from m distinct ones, each copy with its own small noise);
* agreement: every image set above (and the samples of each ``--generators`` run folder's last checkpoint) scored by
  the extractor under test and by an independently trained second extractor (other seed, other widths); Spearman
  rank correlation of their FIDs.

Each extractor variant is a way to read features from the domain classifier: its layer (``penultimate``: the
post-ReLU hidden layer; ``prerelu``: before the ReLU; ``conv``: the last conv block, globally average-pooled) and an
optional L2 normalisation.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from xaigan import data as data_mod
from xaigan import metrics
from xaigan.metrics.domain import domain_preprocess
from xaigan.metrics.domain_training import train_domain_classifier


def features(model, images_uint8: torch.Tensor, layer: str, l2: bool, batch: int = 1000) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(images_uint8), batch):
            x = domain_preprocess(images_uint8[i : i + batch])
            if layer == "penultimate":
                f = model.features(x)
            elif layer == "prerelu":
                f = model.body[:-1](x)
            elif layer == "conv":
                f = model.body[:-3](x).mean(dim=(2, 3))  # ... -> last conv block output (before flatten)
            else:
                raise ValueError(layer)
            if l2:
                f = F.normalize(f, dim=1)
            out.append(f.float())
    return torch.cat(out).numpy().astype(np.float64)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_sets(test, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    idx = rng.choice(len(test), n, replace=False)
    base = test.images[idx]
    x = base.float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    sets = {"real test": base}
    for s in (0.05, 0.1, 0.2, 0.4):
        sets[f"noise {s}"] = to_uint8(x + s * torch.randn(x.shape, generator=g))
    for s in (0.5, 1.0, 2.0):
        sets[f"blur {s}"] = to_uint8(gaussian_blur(x, s))
    labels = test.labels.numpy()
    for k in (8, 5, 2, 1):
        pool = np.flatnonzero(labels < k)
        sets[f"classes 0-{k - 1}"] = test.images[rng.choice(pool, n, replace=len(pool) < n)]
    # less variety within every class (all 10 kept): n images made from m distinct ones, each copy with its own
    # small noise, the way a generator that covers every class but only part of each would look
    for m in (2000, 500, 100):
        pick = test.images[rng.choice(len(test), m, replace=False)].float() / 127.5 - 1
        copies = pick[torch.arange(n) % m]
        sets[f"distinct {m}"] = to_uint8(copies + 0.05 * torch.randn(copies.shape, generator=g))
    return sets


def score(real_f: np.ndarray, fake_f: np.ndarray, ks: list[int]) -> dict[str, float]:
    out = {"fid": metrics.fid(real_f, fake_f), "kid": metrics.kid(real_f, fake_f)[0]}
    for k in ks:
        out[f"precision@{k}"], out[f"recall@{k}"] = metrics.precision_recall(real_f, fake_f, k=k)
    return out


def generated_sets(runs: list[str], n: int) -> dict[str, torch.Tensor]:
    from xaigan.evaluate import generate_uint8, load_generator

    sets = {}
    for run in runs:
        G, cfg = load_generator(run)
        sets[f"GAN {Path(run).name}"] = generate_uint8(G, n, cfg.noise_dim, seed=0)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--variants", nargs="*", default=["penultimate", "prerelu", "conv", "penultimate+l2"])
    parser.add_argument("--augment", action="store_true", help="train both classifiers with corruptions")
    parser.add_argument("--k", type=int, nargs="+", default=[3])
    parser.add_argument("--runs", nargs="*", default=[], help="run folders whose generators join the image sets")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    train = data_mod.load(args.dataset, split="train", download=False)
    test = data_mod.load(args.dataset, split="test", download=False)
    rng = np.random.default_rng(0)
    n = min(args.n, len(test))
    reference = train.images[rng.choice(len(train), n, replace=False)]
    sets = {**image_sets(test, n, rng), **generated_sets(args.runs, n)}
    first, acc1 = train_domain_classifier(
        train.images,
        train.labels,
        seed=0,
        epochs=args.epochs,
        val_images=test.images,
        val_labels=test.labels,
        augment=args.augment,
    )
    second, acc2 = train_domain_classifier(
        train.images,
        train.labels,
        seed=1,
        epochs=args.epochs,
        widths=(24, 48, 96),
        hidden=192,
        val_images=test.images,
        val_labels=test.labels,
        augment=args.augment,
    )
    print(f"classifiers: accuracy {acc1:.4f} (seed 0, widths 16.32.64) and {acc2:.4f} (seed 1, widths 24.48.96)")
    results: dict = {"n": n, "accuracy": [acc1, acc2], "variants": {}}
    for variant in args.variants:
        layer, _, norm = variant.partition("+")
        rows = {}
        fids2 = []
        for model, which in ((first, "first"), (second, "second")):
            ref = features(model, reference, layer, norm == "l2")
            for name, imgs in sets.items():
                s = score(ref, features(model, imgs, layer, norm == "l2"), args.k)
                if which == "first":
                    rows[name] = s
                else:
                    rows[name]["fid_second"] = s["fid"]
                    fids2.append(s["fid"])
        rho = stats.spearmanr([r["fid"] for r in rows.values()], fids2).statistic
        results["variants"][variant] = {"sets": rows, "spearman_fid": float(rho)}
        print(f"\n{variant}: Spearman rank correlation of FID with the second extractor {rho:.3f}")
        pr = [f"{m}@{k}" for k in args.k for m in ("precision", "recall")]
        print("| set | FID | KID | " + " | ".join(pr) + " | FID (second) |\n|---|" + "---:|" * (len(pr) + 3))
        for name, r in rows.items():
            cells = " | ".join(f"{r[c]:.3f}" for c in pr)
            print(f"| {name} | {r['fid']:.3g} | {r['kid']:.3g} | {cells} | {r['fid_second']:.3g} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
