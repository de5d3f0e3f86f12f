"""Errors the command line reports as one line."""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""
