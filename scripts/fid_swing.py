"""Where the spread of final FIDs comes from: seeds, or where in its oscillation each run stopped.

    python scripts/fid_swing.py results/fmnist35-powered results/variants-confirm

For every cell of each record (committed results folders): the standard deviation of the final FID (10,000 samples)
across seeds; the within-run standard deviation of the last three in-training FIDs (2,000 samples, 5 epochs apart),
pooled over runs; the correlation across runs of the final FID with the last in-training FID (the same checkpoint,
scored on other samples: how much of the final number is sampling noise); and, for runs trained with ``g_ema``, the
same for G's own in-training FIDs (``fid_raw``) beside the weight average's.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def _runs(cell: Path) -> list[tuple[list[dict], float]]:
    found = []
    for run in sorted(cell.glob("seed_*")):
        evaluation = run / "eval.json"
        if not evaluation.is_file():
            continue
        lines = (run / "metrics.jsonl").read_text().splitlines()
        evals = [r for r in map(json.loads, lines) if "fid" in r]
        found.append((evals, json.loads(evaluation.read_text())["fid"]))
    return found


def _within(curves: list[list[float]], k: int = 3) -> float:
    """Pooled within-run standard deviation of each curve's last ``k`` values."""
    tails = [c[-k:] for c in curves if len(c) >= k]
    return math.sqrt(float(np.mean([np.var(t, ddof=1) for t in tails]))) if tails else math.nan


def swing(cell: Path) -> dict[str, float] | None:
    runs = _runs(cell)
    if len(runs) < 3:
        return None
    finals = np.array([final for _, final in runs])
    curves = [[r["fid"] for r in evals] for evals, _ in runs]
    row = {
        "runs": len(runs),
        "final_sd": float(np.std(finals, ddof=1)),
        "within_sd": _within(curves),
        "corr_final_last": float(np.corrcoef(finals, [c[-1] for c in curves])[0, 1]),
    }
    raw = [[r["fid_raw"] for r in evals if "fid_raw" in r] for evals, _ in runs]
    if all(raw):
        row["within_sd_raw"] = _within(raw)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| record | cell | runs | SD of final FID across seeds | within-run SD, last 3 evals | G's own (fid_raw) | "
          "corr(final, last eval) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for record in args.records:
        for cell in sorted(p for p in record.iterdir() if p.is_dir() and any(p.glob("seed_*"))):
            row = swing(cell)
            if row is None:
                continue
            raw = f"{row['within_sd_raw']:.2f}" if "within_sd_raw" in row else ""
            print(
                f"| {record.name} | {cell.name} | {row['runs']} | {row['final_sd']:.2f} | {row['within_sd']:.2f} | "
                f"{raw} | {row['corr_final_last']:.2f} |"
            )


if __name__ == "__main__":
    main()
