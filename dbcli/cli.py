"""The ``dbnet`` command line: the Typer app, assembled from ``dbcli.commands`` (one module per
subcommand). ``python -m dbcli.cli`` (torchrun) and ``python -m dbcli`` run it too."""

from __future__ import annotations

import typer

from dbcli.commands import convert, detect, evaluate, export, ocr, serve, train, visualize
from dbcli.streams import exit_status, guard_standard_streams
from dbcli.version import __version__

# Help is click's plain two-column layout (rich_markup_mode=None): every option name stays whole and
# its description wraps beside it on an 80-column terminal (rich's table cut long names to "--no-time-…"
# and squeezed the descriptions into a narrow column); up to 120 columns wide on wider terminals.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
                  help="DBNet scene-text detection: train, evaluate, detect, export, visualize.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dbnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """DBNet (Liao et al., AAAI 2020) scene-text detector."""


app.command(short_help="Train DBNet (the paper's recipe by default) into a run folder.")(train.train)
app.command("eval", short_help="Score weights or a predictions file on a dataset: P, R, hmean.")(evaluate.eval_command)
app.command(short_help="Find text in images and PDF pages and write its polygons.")(detect.detect)
app.command(short_help="Read the text in images and PDF pages, in reading order.")(ocr.ocr)
app.command(short_help="Draw the detections over each image or page as PNG files.")(visualize.visualize)
app.command(short_help="Export weights to ONNX or TorchScript, checked against PyTorch.")(export.export)
app.command(short_help="Convert a PaddleOCR DB detector (ONNX) into a dbnet weights file.")(convert.convert)
app.command(short_help="Serve the detector over HTTP, with a page to try it (the serve extra).")(serve.serve)


def run() -> None:
    """Console-script entry point: closed standard streams get ``/dev/null`` first, and output lost
    to a closed stdout makes the status non-zero (``dbcli.streams``)."""
    lost = guard_standard_streams()
    try:
        app()
    except SystemExit as exc:
        raise SystemExit(exit_status(exc.code, lost)) from None


if __name__ == "__main__":
    run()
