"""The ``dbnet`` command line: the Typer app, assembled from ``dbcli.commands`` (one module per
subcommand). ``python -m dbcli.cli`` (torchrun) and ``python -m dbcli`` run it too."""

from __future__ import annotations

import typer

from dbcli import __version__
from dbcli.commands import convert, detect, evaluate, export, train, visualize

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="DBNet scene-text detection: train, evaluate, detect, export, visualize.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dbnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """DBNet (Liao et al., AAAI 2020) scene-text detector."""


app.command()(train.train)
app.command("eval")(evaluate.eval_command)
app.command()(detect.detect)
app.command()(visualize.visualize)
app.command()(export.export)
app.command()(convert.convert)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
