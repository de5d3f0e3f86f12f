"""The ``xaigan`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xaigan import config as config_mod

log = logging.getLogger("xaigan")

# Flags that mirror config keys one to one (``--data-dir`` sets ``data_dir``); everything else goes via --set.
TRAIN_FLAGS = (
    "dataset",
    "data_dir",
    "fraction",
    "subset",
    "split",
    "model",
    "epochs",
    "batch_size",
    "lr_g",
    "lr_d",
    "seed",
    "device",
    "xai",
    "alpha",
    "xai_start",
    "diffaugment",
    "eval_every",
)


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config overrides")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")
    for key in TRAIN_FLAGS:
        parser.add_argument("--" + key.replace("_", "-"), dest=f"flag_{key}", metavar=key.upper())
    parser.add_argument("--name", help="run name (default: from dataset, model, xai and seed)")
    parser.add_argument("--out", help="run folder (default: runs/NAME)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (for logs)")


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < --config file < flags < --set, validated."""
    layers: list[dict[str, Any]] = []
    if args.config:
        layers.append(config_mod.load_yaml(args.config))
    flags = {k: getattr(args, f"flag_{k}") for k in TRAIN_FLAGS if getattr(args, f"flag_{k}", None) is not None}
    layers.append(config_mod.parse_assignments(f"{k}={v}" for k, v in flags.items()))
    layers.append(config_mod.parse_assignments(args.set))
    if getattr(args, "quiet", False):
        layers.append({"progress": False})
    if getattr(args, "name", None):
        layers.append({"name": args.name})
    return config_mod.resolve(*layers)


def default_run_name(cfg: dict[str, Any]) -> str:
    if cfg["name"]:
        return cfg["name"]
    dataset = cfg["dataset"].replace("folder:", "folder-").replace("/", "_").strip("_")
    frac = "" if cfg["fraction"] == 1 else f"-f{cfg['fraction']:g}"
    aug = f"-da_{cfg['diffaugment'].replace(',', '_')}" if cfg["diffaugment"] else ""
    return f"{dataset}{frac}-{cfg['model']}-{cfg['xai']}{aug}-s{cfg['seed']}"


def build_trainer(cfg: dict[str, Any], run_dir: Path, overwrite: bool = False, resume: bool = False):
    """A Trainer for ``cfg`` (its guidance and augmentation come from the config)."""
    from xaigan.train import Trainer

    if resume:
        return Trainer.resume(run_dir)
    return Trainer(cfg, run_dir, overwrite=overwrite)


def cmd_train(args: argparse.Namespace) -> int:
    from xaigan.train import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        cfg = config_mod.load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
        if cfg is None:
            raise CLIError(f"{run_dir} holds no run to resume (no config.yaml)")
        trainer = build_trainer(config_mod.validate(cfg), run_dir, resume=True)
        if args.quiet:
            trainer.cfg["progress"] = False
        log.info("resuming %s at epoch %d, step %d", run_dir, trainer.epoch, trainer.step)
    else:
        cfg = config_from_args(args)
        run_dir = Path(args.out) if args.out else Path("runs") / default_run_name(cfg)
        trainer = build_trainer(cfg, run_dir, overwrite=args.overwrite)
    attach_evaluation(trainer)
    summary = trainer.fit()
    if summary.get("interrupted"):
        print(f"interrupted at step {summary['step']}; continue with: xaigan train --resume {run_dir}")
        return 130
    print(f"done: {run_dir}  samples: {run_dir / 'samples'}  ({summary['train_seconds']:.0f} s training)")
    assert isinstance(trainer, Trainer)
    return 0


def attach_evaluation(trainer: Any) -> None:
    """Score the generator every ``eval_every`` epochs (FID-vs-epoch, best.pt) when the config asks for it."""
    if trainer.cfg.get("eval_every", 0) > 0:
        try:
            from xaigan.evaluate import attach
        except ImportError:
            log.warning("eval_every set but evaluation is not available in this build")
            return
        attach(trainer)


def cmd_data(args: argparse.Namespace) -> int:
    from xaigan import data
    from xaigan.data.sources import verify_file

    names = [args.name] if args.name else data.available()
    for name in names:
        if name not in data.REGISTRY:
            raise CLIError(f"unknown dataset {name!r}; available: {', '.join(data.available())}")
    for name in names:
        spec = data.REGISTRY[name]
        try:
            found = data.resolve(spec, args.data_dir, download=args.action == "fetch")
        except data.DataUnavailableError as exc:
            if args.action == "list":
                print(f"{name:15s} not available offline ({spec.description})")
                continue
            raise CLIError(str(exc)) from exc
        if args.action == "fetch" and found.source == "offline-subset":
            tried = "; ".join(found.tried)
            raise CLIError(f"could not fetch {name}; only the offline subset is available. Tried: {tried}")
        where = f"{found.source}: {found.location}"
        print(f"{name:15s} {where}" + (f"  [{found.note}]" if found.note else ""))
        if args.action == "verify":
            if found.source == "offline-subset":
                print("  (offline subset: no canonical checksum)")
                continue
            for remote in spec.files:
                path = found.files[remote.name]
                print(f"  {path.name:32s} {verify_file(path, remote) if path.is_file() else 'folder (not hashed)'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from xaigan.evaluate import load_generator
    from xaigan.io import save_image_grid

    run_dir = Path(args.run)
    ckpt = run_dir / "checkpoints" / args.checkpoint
    if not ckpt.is_file():
        raise CLIError(f"no checkpoint {ckpt}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CLIError(f"{out} exists; pass --force to replace it")
    G, _ = load_generator(run_dir, args.checkpoint)
    G.eval()
    z = torch.randn(args.n, G.noise_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = G(z)
    save_image_grid(images, out, nrow=args.nrow)
    print(f"wrote {args.n} samples to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xaigan", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a GAN (standard or xAI-guided)")
    _add_train_args(train)
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the folder")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="list, fetch or verify datasets")
    data.add_argument("action", choices=("list", "fetch", "verify"))
    data.add_argument("name", nargs="?")
    data.add_argument("--data-dir")
    data.set_defaults(func=cmd_data)

    sample = sub.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--nrow", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--checkpoint", default="last.pt")
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--force", action="store_true")
    sample.set_defaults(func=cmd_sample)

    from xaigan import commands

    commands.register(sub, _add_train_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    from xaigan.data import DataUnavailableError
    from xaigan.data.formats import FormatError
    from xaigan.train import RunExistsError

    try:
        return int(args.func(args) or 0)
    except (CLIError, config_mod.ConfigError, DataUnavailableError, FormatError, RunExistsError) as exc:
        print(f"xaigan: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as exc:
        # Library errors for bad input (missing weights file, unlabelled data, ...) are one line, not a traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"xaigan: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
