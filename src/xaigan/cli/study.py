"""Commands on studies (many runs) and scores: ``evaluate``, ``copying``, ``reproduce`` and ``report``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xaigan.cli.errors import CLIError
from xaigan.rundir import RunDir


def cmd_evaluate(args: argparse.Namespace) -> int:
    from xaigan.evaluate import PR_K, evaluate_run

    if args.n <= PR_K:
        raise CLIError(
            f"--n must be at least {PR_K + 1} (precision and recall look at {PR_K} neighbours), got {args.n}"
        )
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

    if args.n < 1 or args.cells < 1:
        raise CLIError(f"--n and --cells must be at least 1, got {args.n} and {args.cells}")
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
    from xaigan.experiments import load_grid, make_executor, run_grid
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
            record=args.record,
            executor=make_executor(args.executor, workers=workers, ray_options=ray_options),
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
