"""CLI commands of the report text pipeline: ``clinclip text ...``."""

from __future__ import annotations

import typer

from clinclip.cli import text_prepare

text_app = typer.Typer(help="Report text pipeline: sections, sentences, labels, hard negatives, graphs.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``text`` command group to the top-level app."""
    text_prepare.register(text_app)
    app.add_typer(text_app, name="text")
