"""``dbnet detect``: options in, ``dbcli.workflows.detect.detect_files`` out, one summary line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dbcli.commands.common import (
    dpi_opt,
    fail,
    inputs_arg,
    options_from,
    say,
    say_error,
    sigterm_as_interrupt,
    status,
)
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError
from dbcli.progress import plural


def _summary_line(summary, crops: Path | None) -> str:
    where = f"wrote {'stdout' if str(summary.out) == '-' else summary.out}: " if summary.out is not None else ""
    skipped = f", {summary.failed} skipped" if summary.failed else ""
    skipped += f", {summary.resumed} done before" if summary.resumed else ""
    rate = summary.images / summary.seconds if summary.seconds > 0 else 0.0
    crop_files = f"; {plural(summary.crops, 'crop')} written to {crops}" if crops is not None else ""
    return (f"{where}{plural(summary.images, 'image')}, {plural(summary.detections, 'text region')}{skipped} "
            f"in {summary.seconds:.1f} s ({rate:.1f} images/s){crop_files}")


@options_from(InferenceOptions)
def detect(
    inputs: list[str] = inputs_arg(),
    out: Optional[str] = typer.Option(None, "--out", "-o", show_default=False, metavar="<path>",
                                      help="Output file (json, jsonl; a folder such as results/ gets "
                                           "polygons.json inside it; - for stdout) or folder (icdar). "
                                           "Without it, a summary table is printed."),
    crops: Optional[Path] = typer.Option(None, "--crops", show_default=False,
                                         help="Also cut every detected region out as an upright PNG into this "
                                              "folder (tilted text straightened, vertical text turned to read "
                                              "left to right): <stem>_001.png, ... in --sort order; each JSON "
                                              "detection names its file in \"crop\"."),
    dpi: float = dpi_opt(),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", show_default=False,
                                      help="json: one file {model, settings, images}; jsonl: one image per "
                                           "line, streamed (large jobs); icdar: res_<stem>.txt per image in "
                                           "the --out folder (x1,y1,...,xn,yn,score lines). Default: jsonl "
                                           "for an --out ending in .jsonl, else json."),
    resume: bool = typer.Option(False, "--resume",
                                help="--format jsonl: skip the images already in --out (or in the "
                                     "<out>.partial file an interrupted run left) and append the others."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out file that is not a dbnet detect output "
                                        "(inputs and weights files are never replaced)."),
    *,
    options: InferenceOptions,
) -> None:
    """Detect text in images and PDF pages and write polygons in original-image pixel coordinates.

    Detections are in reading order (--sort). A PDF gives one result per page ("report.pdf#page=3", with
    its page number, size in points and --dpi). Unreadable, truncated and oversized files, and encrypted
    or damaged PDFs, are skipped with a warning; the exit status is non-zero only when no image could be
    processed. With --format jsonl, an interrupted run leaves the images done in
    <out>.partial, and --resume continues it.
    Under torchrun, each process takes its share of the images and rank 0 writes the merged output.
    """
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.engine.load import load
    from dbcli.outputs.writers import FORMATS
    from dbcli.workflows.detect import DetectInterrupted, detect_files

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    fmt = fmt or ("jsonl" if out is not None and Path(out).suffix.lower() == ".jsonl" else "json")
    if fmt.lower() not in FORMATS:
        fail(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    try:
        with status("loading the model ..."):
            model, settings = load(options)
        with sigterm_as_interrupt():
            summary = detect_files(inputs, out, fmt, model, settings, resume=resume, crops=crops, dpi=dpi,
                                   overwrite=overwrite)
    except DetectInterrupted as exc:
        say_error(str(exc))
        raise typer.Exit(130) from None
    except DBNetError as exc:
        fail(str(exc))
    if summary.lead:
        say(_summary_line(summary, crops), err=True)
