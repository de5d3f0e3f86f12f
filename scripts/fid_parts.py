"""What a run's FID is made of: the distance of the feature means against the covariance term, and how spread out
the samples are, beside KID and the k-NN scores; plus how bright the samples' border is (DiffAugment's translation
pads with 0, mid-grey on [-1, 1], where Fashion-MNIST's border is black).

    python scripts/fid_parts.py RUN [RUN ...] [--n 10000] [--json F]

Each run folder's last checkpoint is scored as ``xaigan evaluate`` scores it (G's weight average where the run kept
one, the same noise seed, the domain extractor, the full dataset as reference); the real row is a random 10,000 of the
reference scored the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from xaigan import metrics
from xaigan.evaluate import PR_K, Evaluator, generate_uint8, load_generator
from xaigan.metrics.manifold import kth_nn_radii

BORDER = 2  # pixels


def parts(ev: Evaluator, feats: np.ndarray, images: torch.Tensor) -> dict[str, float]:
    scores = ev.score_features(feats)
    mu_f, sig_f = metrics.feature_statistics(feats)
    mean_term = float(np.sum((ev.real["mu"] - mu_f) ** 2))
    x = images.float() / 127.5 - 1
    inner = torch.zeros(x.shape[-2:], dtype=torch.bool)
    inner[BORDER:-BORDER, BORDER:-BORDER] = True
    return {
        "fid": scores["fid"],
        "mean_term": mean_term,
        "cov_term": scores["fid"] - mean_term,
        "spread_ratio": float(np.trace(sig_f) / np.trace(ev.real["sigma"])),
        "kid": scores["kid_mean"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "knn_radius": float(np.median(kth_nn_radii(feats, k=PR_K))),
        "border": float(x[..., ~inner].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--json")
    args = parser.parse_args()
    first_cfg = load_generator(args.runs[0])[1]
    ev = Evaluator(first_cfg.dataset, data_dir=first_cfg.data_dir, reference="all")
    pick = np.random.default_rng(1).choice(len(ev.reference), args.n, replace=False)
    real_imgs = ev.reference.images[torch.from_numpy(pick)]
    rows = {"real (10k of the reference)": parts(ev, ev.extractor(real_imgs), real_imgs)}
    for run in args.runs:
        G, cfg = load_generator(run)
        imgs = generate_uint8(G, args.n, cfg.noise_dim, seed=0)
        rows[str(Path(run).relative_to(Path(run).parents[1]))] = parts(ev, ev.extractor(imgs), imgs)
    cols = list(next(iter(rows.values())))
    print("| run | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.4g}" for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
