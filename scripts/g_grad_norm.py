"""Whether G's gradient clipping binds at the end of a trained run: the norm of G's gradient, as its step computes
it (the non-saturating loss against D, both nets in train mode, the run's precision), on fresh batches.

    python scripts/g_grad_norm.py runs/variants-confirm/normal/seed_106 --batches 20

A norm below the run's ``g_clip`` means clipping left the step alone, so a uniform scale of G's gradient (which Adam
divides out) changes nothing, and a per-sample scale only re-weights the samples against each other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _trained import load_trained

from xaigan.config import Config
from xaigan.explain import resolve_output
from xaigan.train.losses import bce
from xaigan.train.step import step_autocast


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = []
    for path in args.runs:
        raw, state, _, G, D = load_trained(path)
        cfg = Config.from_dict(raw)
        G.train(), D.train()  # as in G's step: dropout on
        kind = resolve_output(D, cfg.d_output)
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)  # D's and G's dropout masks: the same draws on every call of the script
        norms = []
        for _ in range(args.batches):
            G.zero_grad(set_to_none=True)
            z = torch.randn(cfg.batch_size, cfg.noise_dim, generator=gen)
            with step_autocast(cfg, torch.device("cpu")):  # the run's precision, as its step used it
                loss = bce(D(G(z)).float(), cfg.label_real, kind)
            loss.backward()
            norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in G.parameters()])))  # clipping's norm
        row = {"run": path, "epoch": state["epoch"], "g_clip": cfg.g_clip, "norms": norms}
        row.update(min=min(norms), median=float(np.median(norms)), max=max(norms))
        out.append(row)
        print(
            f"{path} (epoch {state['epoch']}): G's gradient norm {row['min']:.3f}-{row['max']:.3f} "
            f"(median {row['median']:.3f}) over {args.batches} batches of {cfg.batch_size}; g_clip {cfg.g_clip}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
