"""``dbnet ocr``'s work: images and PDF pages -> their text in reading order, on the engine of
``dbnet detect`` with the text read (``Settings.text``: ``dbcli.engine.text``).

``ocr_files`` in named steps: ``plan_inputs`` (the inputs expanded, as detect's), the output checked in
one call (``dbcli.outputs.targets.check_ocr_output``), ``process_share`` (the engine over the images,
warnings for the files it skips), each image's lines (``dbcli.outputs.transcript.text_lines``), then
the document written at once (atomic) or, to stdout as text, each image as it is done.

Torch-free at module level.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.engine.records import ImageRecord
from dbcli.engine.settings import Settings
from dbcli.engine.text import reader_for
from dbcli.errors import DBNetError
from dbcli.outputs.atomic import json_text
from dbcli.outputs.paths import is_stdout, write_output, write_stdout
from dbcli.outputs.targets import check_ocr_output
from dbcli.outputs.transcript import ocr_text, text_lines, txt_block
from dbcli.progress import plural
from dbcli.weights import shipped_files
from dbcli.workflows.detect import less_resumed, plan_inputs, process_share
from dbcli.workflows.inputs import output_targets


@dataclass
class OcrSummary:
    """What ``ocr_files`` did: images read, inputs skipped, lines of text, where they went (None:
    stdout) and the seconds it took."""

    images: int
    failed: int
    lines: int
    out: Path | None
    seconds: float


@dataclass
class Transcript:
    """The text gathered so far: each image's name and lines, and its JSON entry (``json`` only);
    ``stream``: each image printed to stdout as it is done (text to stdout)."""

    fmt: str
    stream: bool
    blocks: list[tuple[str, list[str]]] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)

    def add(self, record: ImageRecord) -> None:
        lines = text_lines(record.detections)
        if self.stream:
            write_stdout(txt_block(record.file, lines).encode("utf-8"))
        self.blocks.append((record.file, lines))
        if self.fmt == "json":
            self.entries.append({**record.to_dict(), "lines": lines})

    def document(self, model: Model, settings: Settings) -> str:
        """The whole output (``txt``, ``md`` or ``json``)."""
        if self.fmt == "json":
            doc = {"model": model.info, "settings": settings.to_dict(), "images": self.entries}
            return json_text(doc, indent=1) + "\n"
        return ocr_text(self.fmt, self.blocks)


def ocr_files(inputs: Sequence[str | os.PathLike], out: str | Path | None, model: Model, settings: Settings, *,
              console: Any = None, progress: bool = True, dpi: float = defaults.DPI,
              overwrite: bool = False) -> OcrSummary:
    """Read the text of ``inputs`` (images, PDFs, folders, globs) with ``model`` (``dbcli.engine.load``)
    and write it to ``out`` (``.txt``, ``.md``, ``.json``; None or ``-``: text on stdout, each image as
    it is done): per image a header line, then one line of text per text line in ``settings.sort``
    order (module doc of ``dbcli.outputs.transcript``). The output never replaces an input or a
    weights file, nor (unless ``overwrite``) a file that is not a ``dbnet ocr`` output. Raises
    ``DBNetError`` when the output cannot be written or no image could be read; per-file problems are
    warnings on ``console``."""
    from rich.console import Console

    console = console or Console(stderr=True)
    settings = replace(settings, text=True)
    reader_for(model)  # (a damaged recogniser is said before any work)
    plan = plan_inputs(inputs, dpi)
    path, fmt = check_ocr_output(out, output_targets(plan.images, plan.keys), weights=[model.info.get("weights")],
                                 shipped=shipped_files(), overwrite=overwrite)
    plan = less_resumed(plan, None, False)  # (no image: the inputs' error)
    to_stdout = path is None or is_stdout(path)
    transcript = Transcript(fmt, stream=to_stdout and fmt == "txt")
    start = time.perf_counter()
    tally = process_share(plan, list(range(len(plan.images))), model, settings, transcript.add, console,
                          console if progress else Console(quiet=True), "ocr", None)
    failed = len(tally.failures) + len(plan.problems)
    if not transcript.blocks:
        raise DBNetError(f"no image could be processed ({plural(failed, 'input')} failed)")
    if not transcript.stream:
        try:
            write_output(path if path is not None else Path("-"), transcript.document(model, settings).encode("utf-8"))
        except OSError as exc:
            raise DBNetError(f"{path}: cannot write --out ({exc.strerror or exc})") from None
    lines = sum(len(lines) for _, lines in transcript.blocks)
    return OcrSummary(len(transcript.blocks), failed, lines, None if to_stdout else path,
                      time.perf_counter() - start)
