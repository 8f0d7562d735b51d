"""What ``dbnet detect``, ``dbnet ocr``, ``dbnet visualize`` and ``dbnet eval --json`` may write, checked
in one call per command before any work: ``check_detect_outputs``, ``check_ocr_output``,
``check_visualize_outputs``, ``check_eval_output`` (``dbnet export`` and ``convert`` write one file:
``paths.check_file_output``).

The call resolves ``--out`` (a folder given for json / jsonl gets ``polygons.json`` inside it:
``dbcli.outputs.writers.output_path``) and ``--crops``, checks that the options fit together
(``--format icdar`` needs a folder, ``--resume`` a JSONL file, stdout takes json or jsonl), that no two
images would write the same ICDAR file, and that no output replaces an input, a weights file or
(unless ``--overwrite``) a file that is not ``dbnet detect``'s (``dbcli.outputs.paths``). The files it
protects go on being checked as the crops are written. ``dbnet visualize``'s drawings
(``drawing_paths``) are checked the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import check_writable, fit_name
from dbcli.outputs.paths import (
    Protected,
    check_file_output,
    check_replace,
    detect_json,
    detect_jsonl,
    eval_report,
    in_place,
    is_stdout,
    output_file,
)
from dbcli.outputs.transcript import ocr_format, ocr_output
from dbcli.outputs.writers import FORMATS, PageLike, icdar_name, output_path


@dataclass(frozen=True)
class Target:
    """One image to write results for: the file it is read from (a PDF page: its PDF), how results and
    messages name it (``report.pdf#page=3``), the stem of its own output files (its crops:
    ``dbcli.workflows.inputs.output_keys``) and what its ICDAR file is named after (the file, or the
    page)."""

    file: Path
    name: str
    key: str
    source: Path | PageLike


@dataclass(frozen=True)
class DetectTargets:
    """The checked outputs of one run: ``out`` (a file, a folder for icdar, ``-``, or None for the
    summary table), ``crops`` (a folder or None) and the files no output may replace."""

    out: Path | None
    crops: Path | None
    protected: Protected


def _check_request(fmt: str, out: Path | None, resume: bool, crops: Path | None) -> None:
    if fmt not in FORMATS:
        raise DBNetError(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    if fmt == "icdar" and out is None:
        raise DBNetError("--format icdar needs --out DIR")
    if resume and (fmt != "jsonl" or out is None):
        raise DBNetError("--resume continues a --format jsonl --out FILE output (the other formats are "
                         "written whole at the end)")
    if fmt == "icdar" and is_stdout(out):
        raise DBNetError("--out -: stdout takes --format json or jsonl (icdar writes one file per image into a folder)")
    if resume and in_place(out):
        raise DBNetError(f"--resume continues a file; {out} is stdout, a device or a FIFO")
    if crops is not None and crops.exists() and not crops.is_dir():
        raise DBNetError(f"{crops}: exists and is not a directory (--crops writes one PNG per region into a folder)")


def _check_icdar_names(images: Sequence[Target]) -> None:
    """``DBNetError`` when two images would write the same ICDAR file."""
    names: dict[str, Target] = {}
    for image in images:
        other = names.setdefault(icdar_name(image.source), image)
        if other is not image:
            raise DBNetError(f"--format icdar: {other.name} and {image.name} would both write "
                             f"{icdar_name(image.source)}")


def _crop_clashes(images: Sequence[Target], crops: Path) -> None:
    """``DBNetError`` when a crop ``<key>_NNN.png`` would land on an input in the ``crops`` folder (an
    input folder given as --crops)."""
    keys = {image.key for image in images}
    for image in images:
        try:
            rel = os.path.relpath(os.path.realpath(image.file), os.path.realpath(crops))
        except ValueError:
            continue
        match = re.fullmatch(r"(.+)_\d{3,}\.png", rel)
        if match and not rel.startswith(os.pardir) and match.group(1) in keys:
            raise DBNetError(f"--crops {crops}: the crop {crops / rel} would replace the input {image.name}; "
                             "choose another --crops folder")


def _check_files(images: Sequence[Target], out: Path | None, fmt: str, crops: Path | None,
                 protected: Protected, overwrite: bool) -> None:
    if fmt == "icdar":
        _check_icdar_names(images)
    if out is not None and fmt in ("json", "jsonl"):
        protected.check(out, "--out")
        check_replace(out, "--out", detect_json if fmt == "json" else detect_jsonl,
                      f"a dbnet detect {fmt.upper()} file", overwrite)
    elif out is not None:  # icdar: one res_<stem>.txt per image
        for image in images:
            protected.check(out / icdar_name(image.source), "--out", out, "the ICDAR file")
    if crops is not None:
        _crop_clashes(images, crops)


def check_detect_outputs(out: str | os.PathLike | None, fmt: str, images: Sequence[Target], *, resume: bool = False,
                         crops: str | os.PathLike | None = None, weights: Sequence[str | os.PathLike | None] = (),
                         shipped: Sequence[Path] = (), overwrite: bool = False) -> DetectTargets:
    """Every check of ``dbnet detect``'s outputs, before any work (see the module doc): ``images``
    are the run's inputs, ``weights`` the weights file it reads and ``shipped`` the shipped ones
    (never replaced). With no image there is nothing to write, and only the options are checked
    (the inputs' error is the one to tell). Returns the resolved outputs; raises ``DBNetError``."""
    fmt = (fmt or "json").lower()
    out_path = output_path(out, fmt)
    crops_path = Path(crops) if crops is not None else None
    _check_request(fmt, out_path, resume, crops_path)
    protected = Protected().add([image.file for image in images], "the input").add(weights, "the weights file")
    protected.add(shipped, "the shipped weights file")
    if images:
        _check_files(images, out_path, fmt, crops_path, protected, overwrite)
    return DetectTargets(out_path, crops_path, protected)


def drawing_paths(out_dir: Path, key: str, maps: bool) -> list[Path]:
    """Where ``dbnet visualize``'s drawing of the input with output key ``key`` goes: ``<key>.png`` and,
    with ``maps``, ``<key>_maps.png`` in ``out_dir``, each name fitted to the 255-byte limit
    (``fit_name``)."""
    folder, stem = os.path.split(key)
    names = [f"{stem}.png"] + ([f"{stem}_maps.png"] if maps else [])
    return [out_dir / folder / fit_name(name) for name in names]


def check_visualize_outputs(out_dir: Path, images: Sequence[Target], *, maps: bool,
                            pred: str | os.PathLike | None = None, weights: Sequence[str | os.PathLike | None] = (),
                            shipped: Sequence[Path] = ()) -> Protected:
    """Every check of ``dbnet visualize``'s outputs, before any work: ``out_dir`` is a folder (or
    new), and no drawing replaces an input, the predictions file ``pred`` or a weights file (an input
    folder given as --out). Returns the protected files (checked again as each drawing is written);
    raises ``DBNetError``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DBNetError(f"{out_dir}: exists and is not a directory")
    protected = Protected().add([image.file for image in images], "the input")
    protected.add([pred], "the predictions file").add(shipped, "the shipped weights file")
    protected.add(weights, "the weights file")
    for image in images:
        for target in drawing_paths(out_dir, image.key, maps):
            protected.check(target, "--out", out_dir, "the drawing")
    return protected


def check_eval_output(path: Path, protected: Protected, overwrite: bool = False) -> None:
    """Every check of ``dbnet eval --json``'s report file, before any scoring: not a ``protected`` file
    (the dataset's files, the predictions file, a weights file), not (unless ``overwrite``) an
    existing file that is not an eval report, and writable (stdout passes). Raises ``DBNetError``."""
    protected.check(path, "--json")
    check_replace(path, "--json", eval_report, "a dbnet eval report", overwrite)
    if is_stdout(path):
        return
    try:
        check_writable(path)
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write --json ({exc.strerror or exc})") from None


def check_ocr_output(out: str | os.PathLike | None, images: Sequence[Target], *,
                     weights: Sequence[str | os.PathLike | None] = (), shipped: Sequence[Path] = (),
                     overwrite: bool = False) -> tuple[Path | None, str]:
    """Every check of ``dbnet ocr``'s ``--out``, before any work: a ``.txt``, ``.md`` or ``.json`` file
    (a folder gets ``ocr.txt`` inside it; ``-`` is stdout), not an input or a weights file, not
    (unless ``overwrite``) an existing file that is not a ``dbnet ocr`` output, and writable. Returns
    the resolved path (None: stdout) and its format (``dbcli.outputs.transcript.ocr_format``); raises
    ``DBNetError``."""
    path = output_file(out, "ocr.txt") if out is not None else None
    fmt = ocr_format(path)
    if path is None or is_stdout(path):
        return path, fmt
    protected = Protected().add([image.file for image in images], "the input").add(weights, "the weights file")
    protected.add(shipped, "the shipped weights file")
    check_file_output(path, "--out", protected, ocr_output, "a dbnet ocr output", overwrite)
    return path, fmt
