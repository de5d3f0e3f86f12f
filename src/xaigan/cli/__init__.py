"""The ``xaigan`` command line: the only package that parses arguments (see :mod:`xaigan.cli.parser`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from xaigan.cli.errors import CLIError


def build_parser() -> argparse.ArgumentParser:
    """The ``xaigan`` argument parser (imported on first use: importing this package stays light, so signals are
    handled from the first moment of a command)."""
    from xaigan.cli.parser import build_parser as build

    return build()


__all__ = ["CLIError", "build_parser", "main"]


INTERRUPTED = "xaigan: interrupted; files written so far are intact, run the same command again"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``xaigan`` command; returns its exit code (errors are one line on stderr)."""
    # Training defers SIGTERM itself; elsewhere it unwinds like Ctrl-C. An inherited "ignore" is kept.
    main_thread = threading.current_thread() is threading.main_thread()
    handle = main_thread and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGTERM, _terminate) if handle else None
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # outside a training step (start-up, data, evaluation, a second Ctrl-C)
        print(INTERRUPTED, file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        # A signal that lands inside C code (an extension module's import, a callback) can surface as another
        # exception (SystemError, ImportError, RuntimeError) with the KeyboardInterrupt as its context.
        cause = _interruption(exc)
        if cause is None:
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 143 if isinstance(cause, Terminated) else 130
    finally:
        if handle:
            signal.signal(signal.SIGTERM, previous)


def _interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or :class:`Terminated`) in ``exc``'s cause/context chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training: unwinds like Ctrl-C (temp files removed, locks released), exit 143."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    from xaigan.config import ConfigError
    from xaigan.data import DataUnavailableError
    from xaigan.data.formats import FormatError
    from xaigan.experiments.cluster import RayUnavailableError
    from xaigan.experiments.runner import RunsFailedError
    from xaigan.experiments.workers import WorkerDiedError
    from xaigan.guidance import GuidanceHealthError
    from xaigan.rundir import RunLockedError
    from xaigan.train import NonFiniteLossError, RunExistsError, StopRequested

    try:
        return int(args.func(args) or 0)
    except (CLIError, ConfigError, DataUnavailableError, FormatError, RunExistsError, RunLockedError) as exc:
        return _fail(exc, 2, args.verbose)
    except RayUnavailableError as exc:
        return _fail(exc, 2, args.verbose)
    except (GuidanceHealthError, NonFiniteLossError, RunsFailedError, WorkerDiedError) as exc:
        return _fail(exc, 1, args.verbose)  # the run stopped; its last good checkpoint stands
    except StopRequested as exc:
        print(f"xaigan: {exc}; run the same command again to continue", file=sys.stderr)
        return 143 if exc.signal_name == "SIGTERM" else 130
    except (FileNotFoundError, ValueError, KeyError) as exc:
        # Library errors for bad input (missing weights file, unlabelled data, ...) are one line, not a traceback.
        return _fail(exc, 2, args.verbose)
    except OSError as exc:  # disk full, read-only folder, no permission: atomic writes left earlier files intact
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or str(exc)
        return _fail(f"cannot read or write{where}: {reason}; files written before are intact", 1, args.verbose)


def _fail(exc: BaseException | str, code: int, verbose: bool) -> int:
    """One error line on stderr (the traceback above it only with ``-v``); returns the exit code."""
    if verbose:
        traceback.print_exc()
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    print(f"xaigan: error: {message}", file=sys.stderr)
    return code
