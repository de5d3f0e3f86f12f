"""How much a FID moves when only the generated samples change: one checkpoint scored on several noise seeds.

    python scripts/eval_noise.py runs/fmnist35-powered/normal/seed_0 --n 2000 10000 --seeds 5

Prints, per sample count, the FIDs and their standard deviation: the part of a run-to-run or evaluation-to-evaluation
difference that is sampling noise of the evaluation itself (the domain extractor and reference set of the run).
"""

from __future__ import annotations

import argparse

import numpy as np

from xaigan.evaluate import Evaluator, load_generator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--checkpoint", default="last.pt")
    args = parser.parse_args(argv)
    G, cfg = load_generator(args.run, args.checkpoint)
    evaluator = Evaluator(cfg.dataset, data_dir=cfg.data_dir, reference=cfg.eval_reference, features=cfg.eval_features)
    print("| samples | FID per noise seed | SD |")
    print("|---:|---|---:|")
    for n in args.n:
        fids = [evaluator.score_generator(G, n, cfg.noise_dim, seed=s)["fid"] for s in range(args.seeds)]
        print(f"| {n} | {', '.join(f'{f:.2f}' for f in fids)} | {np.std(fids, ddof=1):.2f} |")


if __name__ == "__main__":
    main()
