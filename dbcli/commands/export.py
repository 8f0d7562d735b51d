"""``dbnet export``: weights -> ONNX or TorchScript (``dbcli.interop.export``), checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dbcli.commands.common import fail, needs_torch, say, status
from dbcli.errors import DBNetError


@needs_torch("dbnet export")
def export(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", show_default=False,
                                           help="dbnet weights file or shipped name (default: general)."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default=False,
                                       help="Output file (default: the weights file's name with .onnx or .ts, "
                                            "beside it; in the current folder for a file inside an "
                                            "installed package or a shipped one)."),
    opset: int = typer.Option(17, help="ONNX opset."),
    tolerance: float = typer.Option(1e-4, help="Largest allowed max |P_export - P_torch| in the check."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing --out file that is not a dbnet export (the weights "
                                        "file is never replaced)."),
) -> None:
    """Export weights to ONNX (dynamic batch, height and width) or TorchScript.

    BatchNorm is folded into the convolutions and the graph outputs the probability map only.
    The export is then checked against PyTorch: it fails if the probability maps differ by 1e-4 or more.
    """
    from dbcli.interop.export import default_out
    from dbcli.interop.export import export as run_export

    try:
        out = out if out is not None else default_out(weights, fmt)
        with status(f"exporting to {out} and checking it against PyTorch ..."):
            result = run_export(weights, fmt, out, opset=opset, tolerance=tolerance,
                                overwrite=overwrite)
    except DBNetError as exc:
        fail(str(exc))
    label = "ONNX" if result.format == "onnx" else "TorchScript"
    opset_note = f", opset {opset}" if result.format == "onnx" else ""
    say(f"wrote {result.path} ({label}{opset_note}, {result.size_bytes / 1e6:.1f} MB)")
    say(f"verified: max |P_{result.format} - P_torch| = {result.max_diff:.3g} on a "
               f"{'x'.join(map(str, result.input_shape))} input (limit {tolerance:g})")
