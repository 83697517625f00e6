from typer.testing import CliRunner

from clinclip.cli.main import app


def test_help_lists_every_part():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
