"""CLI: ``clinclip text prepare`` (the whole pipeline over a corpus into one Parquet manifest)."""

from __future__ import annotations

import typer


def register(text_app: typer.Typer) -> None:
    """Add ``prepare`` (and related commands) to the ``text`` group."""
