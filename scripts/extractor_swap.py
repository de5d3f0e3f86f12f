"""How much a retrained domain extractor moves FID: the same generators scored by the shipped extractor and by
retrained ones, and the differences between runs (what a paired comparison uses) under each.

    python scripts/extractor_swap.py RUN [RUN ...] [--n 10000] [--home DIR] [--json F]

Variants: ``shipped`` (what ``xaigan evaluate`` uses), ``threads2`` (the same seed and settings trained on 2 threads:
floating-point order only, as on a machine that lost its cache) and ``seed1`` (another initialisation and data order:
an independent retraining). Each retrained extractor is cached under ``--home`` (default /tmp/xaigan-extractor-swap).
Each run's last checkpoint is scored as ``xaigan evaluate`` scores it (G's weight average where the run kept one,
noise seed 0, the full dataset as reference).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

from xaigan.evaluate import Evaluator, generate_uint8, load_generator
from xaigan.metrics import domain_training

VARIANTS = {"shipped": (None, 0, 1), "threads2": ("threads2", 0, 2), "seed1": ("seed1", 1, 1)}


def score(runs: list[str], variant: str, home: Path, n: int) -> tuple[dict[str, float], str]:
    sub, seed, threads = VARIANTS[variant]
    saved_home, saved_threads = os.environ.get("XAIGAN_HOME"), domain_training.TRAIN_THREADS
    shipped = domain_training.SHIPPED
    try:
        if sub is not None:  # neither the shipped file nor the user's cache: this variant's own
            os.environ["XAIGAN_HOME"] = str(home / sub)
            domain_training.SHIPPED = home / sub / "none"
        domain_training.TRAIN_THREADS = threads
        cfg = load_generator(runs[0])[1]
        ev = Evaluator(cfg.dataset, data_dir=cfg.data_dir, reference="all", seed=seed)
    finally:
        domain_training.TRAIN_THREADS, domain_training.SHIPPED = saved_threads, shipped
        if saved_home is None:
            os.environ.pop("XAIGAN_HOME", None)
        else:
            os.environ["XAIGAN_HOME"] = saved_home
    fids = {}
    for run in runs:
        G, cfg = load_generator(run)
        fids[run] = ev.score_images(generate_uint8(G, n, cfg.noise_dim, seed=0))["fid"]
    return fids, f"{ev.extractor.weights_hash} (accuracy {ev.extractor_info.get('accuracy', float('nan')):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/xaigan-extractor-swap"))
    parser.add_argument("--json")
    args = parser.parse_args()
    fids, weights = {}, {}
    for variant in VARIANTS:
        fids[variant], weights[variant] = score(args.runs, variant, args.home, args.n)
        print(f"{variant}: weights {weights[variant]}", flush=True)
    names = {r: str(Path(r).relative_to(Path(r).parents[1])) for r in args.runs}
    print("\n| run | " + " | ".join(VARIANTS) + " | max change vs shipped |\n|---|" + "---:|" * (len(VARIANTS) + 1))
    for r in args.runs:
        base = fids["shipped"][r]
        change = max(abs(fids[v][r] / base - 1) for v in VARIANTS)
        print(f"| {names[r]} | " + " | ".join(f"{fids[v][r]:.2f}" for v in VARIANTS) + f" | {100 * change:.1f}% |")
    print("\n| difference | " + " | ".join(VARIANTS) + " |\n|---|" + "---:|" * len(VARIANTS))
    for a, b in itertools.combinations(args.runs, 2):
        diffs = [fids[v][a] - fids[v][b] for v in VARIANTS]
        print(f"| {names[a]} - {names[b]} | " + " | ".join(f"{d:+.2f}" for d in diffs) + " |")
    if args.json:
        out = {"weights": weights, "fid": {v: {names[r]: f for r, f in fids[v].items()} for v in VARIANTS}}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
