"""The ``xaigan`` command line: the only package that parses arguments (see :mod:`xaigan.cli.parser`).

Importing it stays light (no torch): signals are handled from the first moment of a command.
"""

from xaigan.cli.entry import INTERRUPTED, Terminated, build_parser, main
from xaigan.cli.errors import CLIError

__all__ = ["INTERRUPTED", "CLIError", "Terminated", "build_parser", "main"]
