"""The errors the project raises on purpose, told apart from bugs.

The command line prints an :class:`InputError` as one line and exits 2 (the user can fix it), a :class:`RunError`
as one line and exits 1 (a run stopped; what it wrote stands). Anything else is an internal error: exit 1, with
where its traceback went.
"""


class XaiganError(Exception):
    """Base of every error the project raises on purpose."""


class InputError(XaiganError, ValueError):
    """Bad input: a setting, a name, a file or data that cannot be used as given (exit status 2).

    Example:
        >>> try:
        ...     raise InputError("dataset must be one of mnist, fashion-mnist; got 'mnsit'")
        ... except ValueError as exc:  # also a ValueError, for callers that catch those
        ...     print(exc)
        dataset must be one of mnist, fashion-mnist; got 'mnsit'
    """


class RunError(XaiganError, RuntimeError):
    """A run or a grid that stopped on purpose (non-finite loss, inert guidance, a dead worker): exit status 1."""


class MissingFileError(InputError, FileNotFoundError):
    """A file or folder the user named (a run, a checkpoint, weights) that is not there: an :class:`InputError`
    that is still a ``FileNotFoundError`` for callers that catch those."""
