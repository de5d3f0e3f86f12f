"""Every argument of every sub-command, in one place. Training flags are generated from the config schema, so
``xaigan train --help`` documents every key with its type, allowed values and default."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from xaigan import __version__
from xaigan import config as config_mod
from xaigan.cli import demo as demo_cmd
from xaigan.cli import run, study
from xaigan.config.checks import feature_names
from xaigan.rundir import LAST

VERBOSE = "debug logging, and the traceback behind an error"
DESCRIPTION = "Train GANs whose generator learns why the discriminator rejected its samples (xAI-GAN)."


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default where it says something: not for ``None``, a switch that is off, or a help line that
    already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` and one flag per config key (``--lr-d``), grouped as the schema groups them."""
    parser.add_argument("--config", metavar="YAML", help="YAML file of config overrides")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one key (repeatable; last wins)"
    )
    groups: dict[str, Any] = {}
    for option in config_mod.schema():
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(f"config: {option.group}")
        flag = "--" + option.name.replace("_", "-")
        # unset flags leave the lower layers alone (and add no "(default: None)")
        common = {
            "dest": f"cfg_{option.name}",
            "default": argparse.SUPPRESS,
            "help": option.describe().replace("%", "%%"),
        }
        if option.type is bool:  # a switch: --xai-strict / --no-xai-strict
            groups[option.group].add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        else:
            groups[option.group].add_argument(flag, metavar=option.type.__name__.upper(), **common)


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated flags: train's flags come from the config schema, so a prefix that works today could turn
    # ambiguous (--dev: --device or --devices?) or change meaning when a key is added.
    parser = argparse.ArgumentParser(prog="xaigan", description=DESCRIPTION, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"xaigan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False)
    )
    fmt = DefaultsFormatter

    train = sub.add_parser("train", help="train a GAN (standard or xAI-guided)", formatter_class=fmt)
    train.add_argument("--out", help="run folder (default: runs/NAME)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this folder (other flags are ignored)")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the folder")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    train.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="train on this many processes (one per GPU on CUDA), launched with torchrun; DistributedDataParallel",
    )
    _config_flags(train)
    train.set_defaults(func=run.cmd_train)

    data = sub.add_parser("data", help="list, fetch or verify datasets", formatter_class=fmt)
    data.add_argument("action", choices=("list", "fetch", "verify"))
    data.add_argument("name", nargs="?", help="a dataset (default: all)")
    data.add_argument("--data-dir", help="folder holding the dataset's files (must exist)")
    data.set_defaults(func=run.cmd_data)

    sample = sub.add_parser("sample", help="draw samples from a trained run", formatter_class=fmt)
    sample.add_argument("run", help="run folder")
    sample.add_argument("--n", type=int, default=64, help="samples")
    sample.add_argument("--nrow", type=int, default=8, help="samples per row")
    sample.add_argument("--seed", type=int, default=0, help="noise seed")
    sample.add_argument("--checkpoint", default=LAST, help="checkpoint file name in the run")
    sample.add_argument("--out", default="samples.png", help="PNG to write")
    sample.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sample.set_defaults(func=run.cmd_sample)

    ev = sub.add_parser(
        "evaluate", help="FID, KID and precision/recall of a trained run (writes eval.json)", formatter_class=fmt
    )
    ev.add_argument("run", help="run folder")
    ev.add_argument("--n", type=int, default=10000, help="generated samples")
    ev.add_argument("--features", choices=feature_names(), default="domain", help="feature extractor")
    ev.add_argument("--reference", choices=("all", "train", "test"), default="all", help="real split")
    ev.add_argument("--checkpoint", default=LAST, help="checkpoint file name in the run")
    ev.add_argument("--inception-weights", help="path to pt_inception-2015-12-05-6726825d.pth")
    ev.add_argument("--seed", type=int, default=0, help="noise seed for the generated samples")
    ev.add_argument("--device", help="where to generate and extract features (default: the run's device)")
    ev.set_defaults(func=study.cmd_evaluate)

    cp = sub.add_parser(
        "copying",
        help="data-copying test: do a run's samples lie closer to its training images than unseen ones do?",
        formatter_class=fmt,
    )
    cp.add_argument("runs", nargs="+", help="run folders (trained on a fraction of their data, or its train split)")
    cp.add_argument("--n", type=int, default=10000, help="generated samples (and held-out images, at most)")
    cp.add_argument("--cells", type=int, default=20, help="k-means cells of the training images")
    cp.add_argument("--features", choices=feature_names(), default="domain", help="feature extractor")
    cp.add_argument("--checkpoint", default=LAST, help="checkpoint file name in the run")
    cp.add_argument("--inception-weights", help="path to pt_inception-2015-12-05-6726825d.pth")
    cp.add_argument("--seed", type=int, default=0, help="noise seed, held-out draw and k-means seed")
    cp.add_argument("--device", help="where to generate and extract features (default: the run's device)")
    cp.set_defaults(func=study.cmd_copying)

    rep = sub.add_parser(
        "reproduce", help="run a grid of cells x seeds, evaluate every run, write the report", formatter_class=fmt
    )
    rep.add_argument("grid", help="grid YAML, e.g. configs/paper/fmnist35.yaml")
    rep.add_argument("--seeds", type=int, help="use seeds 0..N-1 (default: the grid's, else 3)")
    rep.add_argument("--budget", default="quick", help="a budget the grid defines (quick, paper)")
    rep.add_argument(
        "--cells",
        help="comma-separated cells to run (one row of a study), with the cells they are compared with; default all",
    )
    rep.add_argument("--out", help="output folder (default runs/GRID-BUDGET)")
    rep.add_argument("--no-eval", action="store_true", help="train only")
    rep.add_argument(
        "--dry-run",
        action="store_true",
        help="write and train nothing: per cell, the runs recorded, unfinished (how far; which process trains them "
        "now) and to start, and the time left at the pace of the finished runs",
    )
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    rep.add_argument(
        "--workers",
        default="auto",
        help="train this many runs at once, in separate processes, the cores split between them (default auto: one "
        "per core on CPU, at most one per run to train; 1 on a GPU)",
    )
    rep.add_argument(
        "--record",
        help="folder of finished runs' small artefacts (commit it): runs recorded there are skipped, each run "
        "finished here is added, and the report is built from it",
    )
    rep.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: worker processes on this machine; ray: one Ray task per run (pip install 'xaigan[ray]')",
    )
    rep.add_argument(
        "--address",
        help="with --executor ray: the cluster to join (HOST:PORT of its head, or auto); default: start Ray here",
    )
    rep.add_argument("--retries", type=int, default=2, help="with --executor ray: retries of a run whose worker dies")
    rep.add_argument("--cpus-per-run", type=int, help="with --executor ray: CPUs (torch threads) per run (default 1)")
    rep.add_argument(
        "--gpus-per-run", type=float, help="with --executor ray: GPUs per run (default 1 for device cuda, else 0)"
    )
    rep.set_defaults(func=study.cmd_reproduce)

    report = sub.add_parser("report", help="write report.md and report.html for a grid folder")
    report.add_argument("dir", help="a grid output or record folder")
    report.add_argument("--markdown", help="also write the markdown report here (image links made relative to it)")
    report.set_defaults(func=study.cmd_report)

    demo = sub.add_parser(
        "demo", help="the main job: standard vs xAI GAN on the offline default dataset, compared", formatter_class=fmt
    )
    demo.add_argument("--out", default="runs/demo", help="output folder")
    demo.add_argument(
        "--minutes",
        type=float,
        default=demo_cmd.DEMO_MINUTES,
        help="the whole demo's time budget: the epochs are chosen from this machine's measured step time",
    )
    demo.add_argument("--epochs", type=int, default=None, help="epochs per run, instead of choosing them by time")
    demo.add_argument("--seed", type=int, default=0, help="seed of both runs")
    demo.add_argument("--overwrite", action="store_true", help="discard a previous demo in --out")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    demo.set_defaults(func=demo_cmd.cmd_demo)
    for command in sub.choices.values():  # -v and -q after the command too, as pip and ray take them
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE)
        if "--quiet" not in command._option_string_actions:
            command.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser
