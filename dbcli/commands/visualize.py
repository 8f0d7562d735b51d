"""``dbnet visualize``: options in, ``dbcli.workflows.visualize.visualize_files`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dbcli.commands.common import dpi_opt, fail, inputs_arg, options_from, say
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError
from dbcli.progress import plural


@options_from(InferenceOptions)
def visualize(
    inputs: list[str] = inputs_arg(),
    out: Path = typer.Option(..., "--out", "-o", show_default=False,
                             help="Folder for the PNGs: <stem>.png per input (and <stem>_maps.png with --maps)."),
    pred: Optional[Path] = typer.Option(None, "--pred", show_default=False,
                                        help="Draw the detections of this `dbnet detect` JSON/JSONL file "
                                             "instead of running the model."),
    maps: bool = typer.Option(False, "--maps",
                              help="Also save the probability and threshold maps as colour heatmaps side "
                                   "by side with the image (torch backend)."),
    numbers: bool = typer.Option(False, "--numbers",
                                 help="Label each region with its number alone. Default: its number in reading "
                                      "order (as --crops names its file) and, where it stands out (0.05 or more "
                                      "from the image's median), its score (e.g. 3:0.71)."),
    dpi: float = dpi_opt(),
    *,
    options: InferenceOptions,
) -> None:
    """Draw detected polygons, numbered in reading order, over each image or PDF page and save PNGs.

    With --maps, also what the network sees: its probability and threshold maps. With --pred, the
    regions are numbered in the file's order.
    """
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.engine.load import load
    from dbcli.engine.settings import decode_settings
    from dbcli.workflows.visualize import visualize_files

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    try:
        model, settings = load(options, maps=maps) if pred is None or maps else (None, decode_settings(options))
        summary = visualize_files(inputs, out, pred, maps, model, settings, numbers=numbers, dpi=dpi)
    except DBNetError as exc:
        fail(str(exc))
    skipped = f", {summary.failed} skipped" if summary.failed else ""
    say(f"wrote {plural(len(summary.written), 'PNG file')} to {out}{skipped}", err=True)
