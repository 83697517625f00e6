"""CLI: ``clinclip export --model DIR --format hf --out OUT`` (a trained model back to its original format)."""

from __future__ import annotations

from pathlib import Path

import typer

from clinclip.cli.errors import user_errors


@user_errors
def export(
    model: Path = typer.Option(..., "--model", help="A clinclip model directory (e.g. RUN/model)."),
    fmt: str = typer.Option("hf", "--format", help="Output format: hf (a plain Hugging Face folder that "
                                                     "transformers loads without clinclip)."),
    out: Path = typer.Option(..., "--out", help="Folder to write (must be new or empty)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
) -> None:
    """Export a trained model in the format it came from: a CLIP / SigLIP fine-tuned from a Hugging Face
    folder (train --init) becomes a plain Hugging Face folder again (config.json, model.safetensors,
    tokenizer, preprocessor_config.json)."""
    from clinclip.models.export import export_model

    written = export_model(model, fmt, out, overwrite=overwrite)
    typer.echo(f"exported {model} as {fmt}: {written}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.command("export")(export)
