"""``dbnet convert``: a PaddleOCR DB detector (ONNX) -> dbnet weights (``dbcli.interop.paddleocr``)."""

from __future__ import annotations

from pathlib import Path

import typer

from dbcli.commands.common import fail, needs_torch, say, status
from dbcli.errors import DBNetError


@needs_torch("dbnet convert")
def convert(
    source: Path = typer.Argument(..., metavar="MODEL.onnx", show_default=False,
                                  help="A PaddleOCR DB detector exported to ONNX with its BatchNorm layers "
                                       "(PP-OCRv3 det: MobileNetV3 + RSE-FPN), e.g. ch_PP-OCRv3_det_infer.onnx."),
    out: Path = typer.Option(..., "--out", "-o", show_default=False, help="The dbnet weights file to write."),
    licence: str = typer.Option("Apache-2.0", help="The source model's licence, recorded in the file."),
    origin: str = typer.Option("", help="Where the source came from (URL, package), recorded in the file."),
    tolerance: float = typer.Option(1e-4, help="Largest allowed max |P_dbnet - P_source| in the check."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out file (the source model and the shipped weights "
                                        "are never replaced)."),
) -> None:
    """Convert a PaddleOCR DB text detector (ONNX) into a dbnet weights file.

    Layers are matched by execution order with every shape checked; the converted model is then
    compared with onnxruntime on the source (PP-OCR's own BGR input convention) and nothing is written
    unless the probability maps agree within --tolerance. Other model families get an error.
    """
    from dbcli.interop.paddleocr import convert as run_convert

    try:
        with status(f"converting {source} ..."):
            result = run_convert(source, out, licence=licence, origin=origin, tolerance=tolerance,
                                 overwrite=overwrite)
    except DBNetError as exc:
        fail(str(exc))
    say(f"wrote {result.path} (DB-MobileNetV3 x{result.config['scale']}, "
               f"{result.parameters / 1e6:.2f}M parameters, licence {licence})")
    say(f"verified: max |P_dbnet - P_source| = {result.max_diff:.3g} (limit {tolerance:g})")
