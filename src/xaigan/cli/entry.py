"""``xaigan``'s entry point: signals, argument parsing, and the exit code and error line of every outcome."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from xaigan.cli.errors import fail, internal_error
from xaigan.errors import InputError, RunError

INTERRUPTED = "xaigan: interrupted; files written so far are intact, run the same command again"


def build_parser() -> argparse.ArgumentParser:
    """The ``xaigan`` argument parser (imported on first use: importing this package stays light, so signals are
    handled from the first moment of a command)."""
    from xaigan.cli.parser import build_parser as build

    return build()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``xaigan`` command.

    Bad input is one ``xaigan: error:`` line and exit 2, a run that stopped one line and exit 1, an interruption
    130 (SIGINT) or 143 (SIGTERM); any other error is an internal one: exit 1, its traceback in a file (on stderr
    with ``-v``).

    Args:
        argv: the arguments after ``xaigan`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
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
        if cause is None:  # before the command ran (building the parser): -v is not parsed yet
            words = sys.argv[1:] if argv is None else argv
            return internal_error(exc, verbose="-v" in words or "--verbose" in words)
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
    from xaigan.train import StopRequested

    try:
        return int(args.func(args) or 0)
    except InputError as exc:  # the user can fix it
        return fail(exc, 2, args.verbose)
    except RunError as exc:  # the run stopped; its last good checkpoint stands
        return fail(exc, 1, args.verbose)
    except StopRequested as exc:
        print(f"xaigan: {exc}; run the same command again to continue", file=sys.stderr)
        return 143 if exc.signal_name == "SIGTERM" else 130
    except OSError as exc:  # disk full, read-only folder, no permission: atomic writes left earlier files intact
        where = f" ({exc.filename})" if exc.filename else ""
        reason = exc.strerror or str(exc)
        message = f"cannot read or write{where}: {reason}; files written before are intact"
        return fail(exc, 1, args.verbose, message)
    except Exception as exc:
        if _interruption(exc) is not None:
            raise
        return internal_error(exc, args.verbose)
