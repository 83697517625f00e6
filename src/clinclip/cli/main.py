"""The ``clinclip`` command. Each part of the package registers its own commands (``register(app)``
in ``clinclip/cli/<part>.py``) so that this file stays a table of contents. Heavy imports (torch,
transformers) happen inside the commands, so ``clinclip --help`` is instant."""

from __future__ import annotations

import typer

from clinclip.cli import data, evaluate, export, phantom, text, train

app = typer.Typer(
    name="clinclip",
    help="Chest X-ray CLIP that understands negation: prepare data, train, evaluate, demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for part in (text, data, train, evaluate, export, phantom):
    part.register(app)


def _print_version(value: bool) -> None:
    if value:
        from clinclip import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the installed clinclip version and exit.")) -> None:
    """Chest X-ray CLIP that understands negation: prepare data, train, evaluate, demo."""


@app.command()
def version() -> None:
    """Print the installed clinclip version."""
    from clinclip import __version__

    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
