"""Errors the command line reports as one line."""

from xaigan.errors import InputError


class CLIError(InputError):
    """A user error: printed as one line, exit status 2."""
