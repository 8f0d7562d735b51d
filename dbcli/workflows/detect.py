"""``dbnet detect``'s work: images and PDF pages -> text polygons written to an output, for the torch
and the torch-free ONNX backend.

``detect_files`` in named steps: ``plan_inputs`` (expand the INPUTs, ``dbcli.workflows.inputs``; a PDF
gives its pages; less what a resumed output holds), ``process_share`` (run the engine,
``dbcli.engine.pipeline.run_pipeline``, over this process's images, write each image's crops when
asked for, ``dbcli.postprocess.crops``), under torchrun the merge of every rank's share on rank 0
(``dbcli.workflows.distributed``), all inside ``DetectOutput`` (the output's lock, its writer,
``dbcli.outputs.writers``, and what a failure becomes).

This module must not import torch at module level: ``--backend onnx`` runs without it. Only the
multi-process (torchrun) merge imports it, lazily.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.backends.loading import load_model
from dbcli.engine.pdf import PdfPage
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.outputs.atomic import acquire_lock, release_lock
from dbcli.outputs.paths import (
    Protected,
    check_replace,
    detect_json,
    detect_jsonl,
    in_place,
    is_stdout,
)
from dbcli.outputs.writers import (
    FORMATS,
    JsonlWriter,
    Writer,
    done_files,
    file_key,
    icdar_name,
    make_writer,
    output_path,
    write_crops,
)
from dbcli.progress import plural, progress_bar, warn
from dbcli.weights import shipped_files
from dbcli.workflows.distributed import describe, merge_ranks, world
from dbcli.workflows.inputs import Input, expand_inputs, input_name, output_keys


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


def _check_request(fmt: str, out: Path | None, resume: bool, crops: Path | None = None) -> None:
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


def _check_icdar_names(images: list[Input]) -> None:
    """``DBNetError`` when two images would write the same ICDAR file."""
    names: dict[str, Input] = {}
    for p in images:
        other = names.setdefault(icdar_name(p), p)
        if other is not p:
            raise DBNetError(f"--format icdar: {input_name(other)} and {input_name(p)} would both write "
                             f"{icdar_name(p)}")


def _crop_clashes(plan: Plan, crops: Path, protected: Protected) -> None:
    """``DBNetError`` before any work when a crop ``<key>_NNN.png`` would land on an input in the
    ``crops`` folder (an input folder given as --crops)."""
    keys = set(plan.keys)
    for item in plan.images:
        path = item.path if isinstance(item, PdfPage) else Path(item)
        try:
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(crops))
        except ValueError:
            continue
        match = re.fullmatch(r"(.+)_\d{3,}\.png", rel)
        if match and not rel.startswith(os.pardir) and match.group(1) in keys:
            raise DBNetError(f"--crops {crops}: the crop {crops / rel} would replace the input {input_name(item)}; "
                             "choose another --crops folder")


def check_outputs(plan: Plan, out: Path | None, fmt: str, crops: Path | None, weights: str | None,
                  overwrite: bool = False) -> Protected:
    """Refuse, before any work, an output that would replace an input, a weights file or a file that
    is not ``dbnet detect``'s (the latter unless ``overwrite``): ``dbcli.outputs.paths``. Returns the
    protected files (crops are checked again as they are written)."""
    files = [item.path if isinstance(item, PdfPage) else item for item in plan.images]
    protected = Protected().add(files, "the input").add([weights], "the weights file")
    protected.add(shipped_files(), "the shipped weights file")
    if out is not None and fmt in ("json", "jsonl"):
        protected.check(out, "--out")
        check_replace(out, "--out", detect_json if fmt == "json" else detect_jsonl,
                      f"a dbnet detect {fmt.upper()} file", overwrite)
    elif out is not None:  # icdar: one res_<stem>.txt per image
        for item in plan.images:
            protected.check(out / icdar_name(item), "--out", out, "the ICDAR file")
    if crops is not None:
        _crop_clashes(plan, crops, protected)
    return protected


def plan_inputs(inputs: Sequence[str | os.PathLike], fmt: str, out: Path | None, resume: bool,
                dpi: float = defaults.DPI) -> Plan:
    """The images of ``inputs`` (rendering PDF pages at ``dpi``), less those a resumed output holds.
    Raises ``DBNetError`` when there is nothing to do or two images would write the same ICDAR file."""
    images, problems = expand_inputs(inputs, dpi)
    if not images:
        raise DBNetError("no image to process: " + "; ".join(problems or ["no INPUT given"]))
    if fmt == "icdar":
        _check_icdar_names(images)
    plan = Plan(images, output_keys(images), problems)
    if resume:
        assert out is not None  # (_check_request)
        _, done = done_files(out)
        todo = [i for i, p in enumerate(images) if file_key(input_name(p)) not in done]
        plan = Plan([images[i] for i in todo], [plan.keys[i] for i in todo], problems, len(images) - len(todo))
    return plan


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
        return DBNetError(f"{kept or out}: cannot write ({exc.strerror or exc}){done}")
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
        return DBNetError(f"{self.out}: cannot write ({exc.strerror or exc})")

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
    (``check_outputs``). Raises ``DBNetError`` when nothing could be
    processed, an option is wrong, or another process writes ``out``; ``DetectInterrupted`` on
    Ctrl-C / SIGTERM. Per-file problems are warnings on ``console``."""
    from rich.console import Console

    console = console or Console(stderr=True)
    out_console = out_console or Console()
    settings = settings or Settings()
    model = model if model is not None else load_model()
    fmt = (fmt or "json").lower()
    out = output_path(out, fmt)  # json / jsonl into a folder (``results/``): results/polygons.json
    crops = Path(crops) if crops is not None else None
    _check_request(fmt, out, resume, crops)
    plan = plan_inputs(inputs, fmt, out, resume, dpi)
    protected = check_outputs(plan, out, fmt, crops, model.info.get("weights"), overwrite)
    rank, size = world()
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
                         time.perf_counter() - start, rank == 0, plan.resumed, tally.crops)
