"""One way for every command to report bad input: a clear message, exit code 2, no traceback."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import typer

from clinclip.errors import ClinclipError

F = TypeVar("F", bound=Callable)


def user_errors(func: F) -> F:
    """Decorator for CLI commands: print a ClinclipError (or FileNotFoundError / ValueError raised by
    input validation) as one red line and exit 2 instead of dumping a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ClinclipError, FileNotFoundError) as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from err

    return wrapper  # type: ignore[return-value]
