"""Commands on single runs: ``train``, ``sample`` and ``data``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from xaigan import config as config_mod
from xaigan.cli.errors import CLIError
from xaigan.rundir import RunDir

log = logging.getLogger("xaigan")


def default_run_name(cfg: config_mod.Config) -> str:
    if cfg.name:
        return cfg.name
    dataset = cfg.dataset.replace("folder:", "folder-").replace("/", "_").strip("_")
    frac = "" if cfg.fraction == 1 else f"-f{cfg.fraction:g}"
    aug = f"-da_{cfg.diffaugment.replace(',', '_')}" if cfg.diffaugment else ""
    return f"{dataset}{frac}-{cfg.model}-{cfg.xai}{aug}-s{cfg.seed}"


def config_layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The override layers a command line gives: ``--config`` file < flags < ``--set``."""
    layers: list[dict[str, Any]] = []
    if args.config:
        layers.append(config_mod.load_yaml(args.config))
    flags = {o.name: getattr(args, f"cfg_{o.name}", None) for o in config_mod.schema()}
    # a flag's value is the string typed; the schema converts it (read as YAML, "--name 2024" would be a number)
    layers.append({k: v for k, v in flags.items() if v is not None})
    layers.append(config_mod.parse_assignments(args.set))
    if getattr(args, "quiet", False):
        layers.append({"progress": False})
    return layers


def cmd_train(args: argparse.Namespace) -> int:
    from xaigan.train import distributed

    if args.nproc < 1:
        raise CLIError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and not distributed.launched():
        return launch(args.nproc, args.argv)
    from xaigan.train import pick_device

    if args.resume:
        run = RunDir(args.resume)
        if not run.config_path.is_file():
            raise CLIError(f"{run.path} holds no run to resume (no {run.CONFIG})")
        device = pick_device(config_mod.Config.from_dict(run.read_config()).device)
    else:
        cfg = config_mod.resolve(*config_layers(args))
        run = RunDir(Path(args.out) if args.out else Path("runs") / default_run_name(cfg))
        device = pick_device(cfg.device)
    dist = distributed.from_env(device)
    try:
        return _train(args, run, None if args.resume else cfg, dist)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, run: RunDir, cfg: Any, dist: Any) -> int:
    from xaigan.experiments import prepare_run

    if dist is not None and not dist.main:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the run
    if args.resume:
        trainer = prepare_run(None, run, resume=True, dist=dist, progress=False if args.quiet else None)
        log.info("resuming %s at epoch %d, step %d", run.path, trainer.epoch, trainer.step)
    else:
        trainer = prepare_run(cfg, run, overwrite=args.overwrite, dist=dist)
    if dist is not None:
        log.info("training on %d processes (rank 0 writes %s)", dist.world, run.path)
    summary = trainer.fit()
    if not trainer.main:
        return 143 if summary.get("signal") == "SIGTERM" else (130 if summary.get("interrupted") else 0)
    if summary.get("interrupted"):
        print(f"interrupted at step {summary['step']}; continue with: xaigan train --resume {run.path}")
        return 143 if summary.get("signal") == "SIGTERM" else 130
    print(f"done: {run.path}  samples: {run.samples_dir}  ({summary['train_seconds']:.0f} s training)")
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without its ``--nproc N`` (what each process started by torchrun runs)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(n: int, argv: list[str]) -> int:
    """Run this same ``xaigan`` command on ``n`` processes with torchrun (single node) and return its exit code;
    SIGINT/SIGTERM reach torchrun, which stops every process (each checkpoints through rank 0)."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    cmd += ["-m", "xaigan", *without_nproc(argv)]
    log.info("launching %d processes: %s", n, " ".join(cmd[1:]))
    child = subprocess.Popen(cmd)
    try:
        return child.wait()
    except BaseException:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
        raise


def cmd_data(args: argparse.Namespace) -> int:
    from xaigan import data
    from xaigan.data.sources import verify_file

    names = [args.name] if args.name else data.available()
    for name in names:
        if name not in data.REGISTRY:
            raise CLIError(f"unknown dataset {name!r}; available: {', '.join(data.available())}")
    for name in names:
        spec = data.REGISTRY.get(name)
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

    if args.n < 1 or args.nrow < 1:
        raise CLIError(f"--n and --nrow must be at least 1, got {args.n} and {args.nrow}")
    run = RunDir(args.run)
    if not run.checkpoint(args.checkpoint).is_file():
        raise CLIError(f"no checkpoint {run.checkpoint(args.checkpoint)}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise CLIError(f"{out} exists; pass --overwrite to replace it")
    G, cfg = load_generator(run, args.checkpoint)
    G.eval()
    z = torch.randn(args.n, cfg.noise_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = G(z)
    save_image_grid(images, out, nrow=args.nrow)
    print(f"wrote {args.n} samples to {out}")
    return 0
