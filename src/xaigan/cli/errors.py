"""How the command line reports errors: the project's own errors (:class:`~xaigan.errors.InputError`,
:class:`~xaigan.errors.RunError`) as one line, anything else as an internal error whose traceback is kept."""

from __future__ import annotations

import sys
import tempfile
import traceback

from xaigan import __version__
from xaigan.errors import InputError

TRACEBACK_PREFIX = "xaigan-traceback-"


class CLIError(InputError):
    """A user error: printed as one line, exit status 2."""


def fail(exc: BaseException, code: int, verbose: bool, message: str | None = None) -> int:
    """Print one error line on stderr (the traceback above it only with ``verbose``).

    Args:
        exc: the error being reported.
        code: the exit code to return.
        verbose: whether ``-v`` was given.
        message: the line to print instead of ``exc``'s own message.

    Returns:
        ``code``.
    """
    if verbose:
        traceback.print_exception(exc)
    if message is None:  # a KeyError's str() is its quoted repr
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    print(f"xaigan: error: {message}", file=sys.stderr)
    return code


def internal_error(exc: BaseException, verbose: bool) -> int:
    """Report an error the project did not raise on purpose (a bug): ``xaigan: internal error: Type: message``,
    then where its traceback is: on stderr with ``verbose``, else in a ``xaigan-traceback-*.txt`` temp file.

    Args:
        exc: the unexpected error.
        verbose: whether ``-v`` was given.

    Returns:
        1, the exit code.
    """
    text = "".join(traceback.format_exception(exc))
    first = str(exc).strip().splitlines()
    head = f"xaigan: internal error: {type(exc).__name__}" + (f": {first[0]}" if first else "")
    if verbose:
        print(text, end="", file=sys.stderr)
        print(f"{head}\nxaigan: this is a bug; please report it with the traceback above", file=sys.stderr)
        return 1
    try:
        with tempfile.NamedTemporaryFile("w", prefix=TRACEBACK_PREFIX, suffix=".txt", delete=False) as handle:
            handle.write(f"xaigan {__version__}, Python {sys.version.split()[0]}\n{text}")
        where = f"the traceback is in {handle.name}"
    except Exception as write_error:  # no temp folder, disk full: the message above still goes out
        where = f"the traceback could not be saved ({type(write_error).__name__}: {write_error})"
    print(f"{head}\nxaigan: this is a bug; {where} (-v prints it); please report it", file=sys.stderr)
    return 1
