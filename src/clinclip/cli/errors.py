"""One way for every command to report bad input: a clear message, exit code 2, no traceback."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer

from clinclip.errors import ClinclipError

F = TypeVar("F", bound=Callable)


def _message(err: BaseException) -> str:
    """One line: a ClinclipError's own message, or ``FILE: what the system said`` for an OS error."""
    if isinstance(err, OSError) and not isinstance(err, ClinclipError):
        where = err.filename if err.filename is not None else ""
        what = err.strerror or str(err)
        return f"{where}: {what}" if where else what
    return " ".join(str(err).split("\n"))


def user_errors(func: F) -> F:
    """Decorator for CLI commands: print a ClinclipError, or an OS error about a file the user named
    (missing, a folder where a file was expected, no permission), as one red line and exit 2 instead of
    dumping a traceback. Anything else is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ClinclipError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                FileExistsError) as err:
            typer.secho(f"error: {_message(err)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from err

    return wrapper  # type: ignore[return-value]
