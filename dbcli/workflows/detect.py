"""``dbnet detect``'s work: images and PDF pages -> text polygons written to an output, for the torch
and the torch-free ONNX backend.

``detect_files`` in named steps: ``plan_inputs`` (expand the INPUTs, ``dbcli.workflows.inputs``; a PDF
gives its pages), the outputs checked in one call (``dbcli.outputs.targets.check_detect_outputs``),
``less_resumed`` (less what a resumed output holds), ``process_share`` (run the engine,
``dbcli.engine.pipeline.run_pipeline``, over this process's images, write each image's crops when
asked for, ``dbcli.outputs.writers.write_crops``), under torchrun the merge of every rank's share on rank 0
(``dbcli.workflows.distributed``), all inside ``DetectOutput`` (the output's lock, its writer,
``dbcli.outputs.writers``, and what a failure becomes).

This module must not import torch at module level: ``--backend onnx`` runs without it. Only the
multi-process (torchrun) merge imports it, lazily.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.backends.loading import load_model
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.outputs.atomic import acquire_lock, release_lock
from dbcli.outputs.paths import Protected, in_place, is_stdout
from dbcli.outputs.targets import check_detect_outputs
from dbcli.outputs.writers import (
    JsonlWriter,
    Writer,
    done_files,
    file_key,
    icdar_name,
    make_writer,
    write_crops,
)
from dbcli.progress import plural, progress_bar, warn
from dbcli.weights import shipped_files
from dbcli.workflows.distributed import describe, merge_ranks, world
from dbcli.workflows.inputs import Input, expand_inputs, input_name, output_keys, output_targets


class DetectInterrupted(DBNetError):
    """Ctrl-C or SIGTERM during ``detect``; the message says where the images done are."""


@dataclass
class DetectSummary:
    images: int
    failed: int
    detections: int
    out: Path | None
    seconds: float
    lead: bool = True  # rank 0 (the process that wrote the output)
    resumed: int = 0  # images found done in the output being resumed (not processed again)
    crops: int = 0  # crop files written (--crops)


@dataclass
class Plan:
    """The images (files and PDF pages) to process, their output keys (``inputs.output_keys``, the
    same whatever was done before), the problems with the inputs, and how many images a resumed
    output already holds."""

    images: list[Input]
    keys: list[str]
    problems: list[str]
    resumed: int = 0


@dataclass
class Tally:
    """What one process did: its failures, detections and crop files counted."""

    images: int = 0
    failures: list[Failure] = field(default_factory=list)
    detections: int = 0
    crops: int = 0


def plan_inputs(inputs: Sequence[str | os.PathLike], dpi: float = defaults.DPI) -> Plan:
    """The images of ``inputs`` (rendering PDF pages at ``dpi``), their output keys and the problems
    with the inputs (``dbcli.workflows.inputs``)."""
    images, problems = expand_inputs(inputs, dpi)
    return Plan(images, output_keys(images), problems)


def less_resumed(plan: Plan, out: Path | None, resume: bool) -> Plan:
    """``plan`` less the images a resumed output holds. Raises ``DBNetError`` when there is nothing to
    do."""
    if not plan.images:
        raise DBNetError("no image to process: " + "; ".join(plan.problems or ["no INPUT given"]))
    if not resume:
        return plan
    assert out is not None  # (check_detect_outputs)
    _, done = done_files(out)
    todo = [i for i, p in enumerate(plan.images) if file_key(input_name(p)) not in done]
    return Plan([plan.images[i] for i in todo], [plan.keys[i] for i in todo], plan.problems,
                len(plan.images) - len(todo))


def output_label(out: Path | None) -> str:
    """How messages name the output: its path, or ``stdout`` (no --out, or ``--out -``)."""
    return "stdout" if out is None or is_stdout(out) else str(out)


def _failure(exc: BaseException, writer: Writer | None, fmt: str, out: Path | None) -> BaseException:
    """What ``detect`` raises for ``exc`` once its writer is aborted: where the work done is kept
    (an interrupt), the output named (a write error), or ``exc`` itself."""
    kept = writer.kept() if isinstance(writer, JsonlWriter) else None
    if isinstance(exc, KeyboardInterrupt):
        if fmt == "icdar":
            where = f"the images done have their {icdar_name('<stem>')} files in {out}"
        else:
            where = (f"the images done are in {kept}; run the same command with --resume to continue"
                     if kept else "nothing was written")
        return DetectInterrupted(f"interrupted: {where}")
    if isinstance(exc, OSError):  # decoding problems are per-file warnings: this is the output
        if kept and isinstance(writer, JsonlWriter):
            done = f"; the {plural(writer.lines, 'image')} done are kept in {kept} (--resume continues it)"
        elif fmt == "icdar":
            done = f"; the images done have their {icdar_name('<stem>')} files in {out}"
        else:
            done = "; nothing was written" if fmt == "json" or writer is None else ""
        return DBNetError(f"{kept or output_label(out)}: cannot write ({exc.strerror or exc}){done}")
    if kept and isinstance(exc, DBNetError):
        return DBNetError(f"{exc}; the images done are in {kept} (--resume continues it)")
    return exc


class DetectOutput:
    """The output of one run as a context: ``lock`` takes ``out`` for this process (``OUT.lock``),
    ``open_writer`` makes its writer, ``close`` finishes it. On an exception the writer is aborted
    (a JSONL run keeps the images done) and the exception becomes ``_failure``'s; the lock is always
    released."""

    def __init__(self, out: Path | None, fmt: str, console: Any, resume: bool):
        self.out, self.fmt, self.console, self.resume = out, fmt, console, resume
        self.writer: Writer | None = None
        self._lock: Any = None

    def _cannot_write(self, exc: OSError) -> DBNetError:
        return DBNetError(f"{output_label(self.out)}: cannot write ({exc.strerror or exc})")

    def lock(self) -> None:
        if self.out is None or in_place(self.out):  # stdout, a device, a FIFO: nothing to lock beside it
            return
        try:
            self._lock = acquire_lock(self.out)
        except OSError as exc:
            raise self._cannot_write(exc) from None

    def open_writer(self) -> Writer:
        try:
            self.writer = make_writer(self.out, self.fmt, self.console, self.resume)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        return self.writer

    def close(self, model_info: dict, settings: dict) -> None:
        if self.writer is not None:
            self.writer.close(model_info, settings)

    def __enter__(self) -> DetectOutput:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        try:
            if exc is not None:
                if self.writer is not None:
                    try:
                        self.writer.abort()
                    except OSError:
                        pass  # the first error is the one to tell
                replacement = _failure(exc, self.writer, self.fmt, self.out)
                if replacement is not exc:
                    raise replacement from None
        finally:
            release_lock(self._lock)


def _write_crops(item: ImageRecord, folder: Path, key: str, protected: Protected | None = None) -> int:
    """Write ``item``'s crops as ``<key>_NNN.png`` into ``folder`` (never over a ``protected`` file),
    name them in the record and let the pixels go; returns how many were written."""
    assert item.crops is not None  # (with_crops)
    item.crop_files = [str(p) for p in write_crops(item.crops, folder, key, protected)]
    item.crops = None
    return len(item.crop_files)


def process_share(plan: Plan, mine: list[int], model: Model, settings: Settings, sink: Callable[[ImageRecord], None],
                  console: Any, bar_console: Any, label: str, crops: Path | None,
                  protected: Protected | None = None) -> Tally:
    """Run the engine over the images ``mine`` (indices into ``plan.images``), warn about each failure
    and note on ``console``, write crops into ``crops`` and hand each record to ``sink``."""
    tally = Tally(images=len(mine))
    with progress_bar(bar_console, label, len(mine)) as bar:
        task = bar.add_task(label, total=len(mine))
        for item in run_pipeline([plan.images[i] for i in mine], model, settings, indices=mine,
                                 with_crops=crops is not None, on_done=lambda: bar.advance(task)):
            if isinstance(item, Failure):
                tally.failures.append(item)
                warn(console, f"{item.message}; skipped")
                continue
            for note in item.messages():
                warn(console, note)
            tally.detections += len(item.detections)
            if crops is not None:
                tally.crops += _write_crops(item, crops, plan.keys[item.index], protected)
            sink(item)
    return tally


def _say_problems(console: Any, model: Model, plan: Plan) -> None:
    for problem in ([model.note] if model.note else []) + plan.problems:
        warn(console, problem)


def _detect_alone(plan: Plan, model: Model, settings: Settings, output: DetectOutput, console: Any,
                  progress: bool, crops: Path | None, protected: Protected) -> tuple[Tally, int]:
    """One process: records stream into the writer as they come. Returns the tally and the failures."""
    from rich.console import Console

    output.lock()
    writer = output.open_writer()
    _say_problems(console, model, plan)
    tally = process_share(plan, list(range(len(plan.images))), model, settings, writer.add, console,
                          console if progress else Console(quiet=True), "detect", crops, protected)
    tally.images -= len(tally.failures)
    return tally, len(tally.failures)


def _detect_ranked(plan: Plan, model: Model, settings: Settings, output: DetectOutput, console: Any,
                   progress: bool, crops: Path | None, rank: int, size: int, protected: Protected
                   ) -> tuple[Tally, int]:
    """Under torchrun: every rank takes every size-th image; rank 0 merges every rank's records and
    writes them in input order. A rank's failure is handed to the merge, not left to hang it."""
    from rich.console import Console

    lead = rank == 0
    records: list[ImageRecord] = []
    tally, error = Tally(), None
    try:
        if lead:
            output.lock()
            _say_problems(console, model, plan)
        label = f"detect (rank {rank}/{size})"
        tally = process_share(plan, list(range(rank, len(plan.images), size)), model, settings, records.append,
                              console, console if lead and progress else Console(quiet=True), label, crops,
                              protected)
    except BaseException as exc:
        error = describe(exc)
    done, n_failed = merge_ranks(records, tally.failures, size, error)
    if (done or plan.resumed) and lead:
        writer = output.open_writer()
        for record in done:
            writer.add(record)
    detections, crop_files = sum(len(r.detections) for r in done), sum(len(r.crop_files or []) for r in done)
    return Tally(len(done), [], detections, crop_files), n_failed


def detect_files(inputs: Sequence[str | os.PathLike], out: str | Path | None = None, fmt: str = "json",
                 model: Model | None = None, settings: Settings | None = None, *, console: Any = None,
                 out_console: Any = None, progress: bool = True, resume: bool = False,
                 crops: str | Path | None = None, dpi: float = defaults.DPI, overwrite: bool = False) -> DetectSummary:
    """Detect text in ``inputs`` and write ``out`` (see the module doc; with json and jsonl, a folder,
    existing or ending in ``/``, gets ``polygons.json`` / ``polygons.jsonl`` inside it, named in
    ``DetectSummary.out``). ``model`` and ``settings`` come from ``dbcli.engine.load.load``.
    ``resume`` (jsonl): skip the images already in
    ``<out>.partial`` (an interrupted run) or ``out`` and append the others. ``crops``: a folder for
    one rectified PNG per detection, ``<key>_<NNN>.png`` (``dbcli.workflows.inputs.output_keys``,
    numbered from 1 in the detections' order), each named in its detection's ``crop`` entry.
    ``dpi``: the rendering resolution of PDF pages. ``out`` ``-`` is stdout. No output replaces an
    input or a weights file, nor (unless ``overwrite``) an existing file that is not a detect output
    (``dbcli.outputs.targets.check_detect_outputs``, one call before any work). Raises ``DBNetError``
    when nothing could be processed, an option is wrong, or another process writes ``out``;
    ``DetectInterrupted`` on Ctrl-C / SIGTERM. Per-file problems are warnings on ``console``."""
    from rich.console import Console

    console = console or Console(stderr=True)
    out_console = out_console or Console()
    settings = settings or Settings()
    model = model if model is not None else load_model()
    fmt = (fmt or "json").lower()
    rank, size = world()  # before any work: torchrun's variables set by hand are refused
    plan = plan_inputs(inputs, dpi)
    targets = check_detect_outputs(out, fmt, output_targets(plan.images, plan.keys), resume=resume, crops=crops,
                                   weights=[model.info.get("weights")], shipped=shipped_files(), overwrite=overwrite)
    out, crops, protected = targets.out, targets.crops, targets.protected
    plan = less_resumed(plan, out, resume)
    start = time.perf_counter()
    with DetectOutput(out, fmt, out_console, resume) as output:
        if size == 1:
            tally, n_failed = _detect_alone(plan, model, settings, output, console, progress, crops, protected)
        else:
            tally, n_failed = _detect_ranked(plan, model, settings, output, console, progress, crops, rank, size,
                                             protected)
        if tally.images == 0 and plan.resumed == 0:
            raise DBNetError(f"no image could be processed ({plural(n_failed + len(plan.problems), 'input')} failed)")
        output.close(model.info, settings.to_dict())
    return DetectSummary(tally.images, n_failed + len(plan.problems), tally.detections, out,
                         time.perf_counter() - start + model.export_seconds, rank == 0, plan.resumed, tally.crops)
