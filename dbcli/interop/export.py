"""``dbnet export``: weights -> an ONNX or TorchScript file (``dbcli.backends.export.export_bytes``:
BatchNorm folded, verified against PyTorch), its output checked before the work and written
atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dbcli.backends.export import OPSET, TOLERANCE, export_bytes
from dbcli.errors import DBNetError
from dbcli.interop import check_tolerance
from dbcli.outputs.atomic import atomic_write_bytes


@dataclass
class ExportResult:
    path: Path
    format: str
    max_diff: float
    input_shape: tuple[int, ...]
    size_bytes: int


def default_out(weights_path: str | Path | None, fmt: str) -> Path:
    """Where ``dbnet export`` writes without ``--out``: the weights file's name with ``.onnx`` (or
    ``.ts``) beside it, or in the current folder when it lies inside an installed package
    (``site-packages``, ``dist-packages``) or is a shipped file: never into an installed package."""
    from dbcli.weights import resolve_weights, weights_dir

    source = resolve_weights(weights_path).absolute()
    name = source.with_suffix(".onnx" if fmt.lower() == "onnx" else ".ts").name
    folder = source.resolve().parent
    installed = any(part in ("site-packages", "dist-packages") for part in folder.parts)
    if installed or folder == weights_dir().resolve():
        return Path.cwd() / name
    return source.parent / name


def export(weights_path: str | Path | None, fmt: str, out: str | Path, opset: int = OPSET,
           tolerance: float = TOLERANCE, overwrite: bool = False) -> ExportResult:
    """``export_bytes``, then write ``out`` atomically. Raises ``DBNetError`` (and writes nothing)
    when the export fails or the max difference is ``>= tolerance``, and before any work when ``out``
    is the weights file (or a shipped one) or, unless ``overwrite``, an existing file that is not a
    dbnet export (``dbcli.outputs.paths``)."""
    from dbcli.outputs.paths import Protected, check_file_output, model_export
    from dbcli.weights import resolve_weights, shipped_files

    fmt = fmt.lower()
    if fmt not in ("onnx", "torchscript"):
        raise DBNetError(f"unknown export format {fmt!r} (onnx or torchscript)")
    check_tolerance(tolerance)
    out = Path(out)
    protected = Protected().add([resolve_weights(weights_path)], "the weights file")
    protected.add(shipped_files(), "the shipped weights file")
    # said before the export (tens of seconds), not after it
    check_file_output(out, "--out", protected, model_export, "a dbnet export", overwrite)
    data, max_diff, shape = export_bytes(weights_path, fmt, opset, tolerance)
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise DBNetError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return ExportResult(out, fmt, max_diff, shape, out.stat().st_size)
