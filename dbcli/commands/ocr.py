"""``dbnet ocr``: options in, ``dbcli.workflows.ocr.ocr_files`` out, one summary line."""

from __future__ import annotations

from typing import Optional

import typer

from dbcli.commands.common import dpi_opt, fail, inputs_arg, options_from, sigterm_as_interrupt, status
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError
from dbcli.progress import plural


@options_from(InferenceOptions, exclude=("text",))
def ocr(
    inputs: list[str] = inputs_arg(),
    out: Optional[str] = typer.Option(None, "--out", "-o", show_default=False, metavar="<file>",
                                      help="Write the text to this file: .txt (a header line per image, then "
                                           "its lines), .md (a heading per image) or .json (dbnet detect's "
                                           "JSON with each image's \"lines\"); a folder gets ocr.txt. "
                                           "Without it (or -), the text is printed."),
    dpi: float = dpi_opt(),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out file that is not a dbnet ocr output "
                                        "(inputs and weights files are never replaced)."),
    *,
    options: InferenceOptions,
) -> None:
    """Read the text in images and PDF pages, in reading order: one line of text per text line.

    Each image (or PDF page) starts with a header line "=== <file> ===". The regions are found by the
    detector (--weights) and read by the shipped recogniser, as dbnet detect --text; --sort columns
    reads multi-column documents column by column. Unreadable files are skipped with a warning.
    """
    from dbcli.engine.load import load
    from dbcli.workflows.ocr import ocr_files

    try:
        with status("loading the models ..."):
            model, settings = load(options)
        with sigterm_as_interrupt():
            summary = ocr_files(inputs, out, model, settings, dpi=dpi, overwrite=overwrite)
    except KeyboardInterrupt:
        typer.secho("error: interrupted; nothing written", fg="red", err=True)
        raise typer.Exit(130) from None
    except DBNetError as exc:
        fail(str(exc))
    where = f"wrote {summary.out}: " if summary.out is not None else ""
    skipped = f", {summary.failed} skipped" if summary.failed else ""
    typer.echo(f"{where}{plural(summary.images, 'image')}, {plural(summary.lines, 'line')} of text{skipped} "
               f"in {summary.seconds:.1f} s", err=True)
