"""``dbnet detect``: images -> text polygons, for the torch and the torch-free ONNX backend.

The command: expand the INPUTs (``dbcli.inputs``; a PDF gives its pages), run the engine
(``dbcli.engine.run_pipeline``), write each image's crops when asked for (``dbcli.crops``), hand the
results, in input order, to a writer (``dbcli.writers``: JSON, JSONL, ICDAR txt files or a summary
table), and under torchrun merge every rank's share on rank 0.

This module must not import torch at module level: ``--backend onnx`` runs without it. Only the
multi-process (torchrun) merge imports it, lazily.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbcli.backends import Model, default_weights, load_model, onnx_precision, weights_path  # noqa: F401
from dbcli.crops import write_crops
from dbcli.engine import (  # noqa: F401
    DEFAULT_SHORT_SIDE,
    Failure,
    ImageResult,
    Settings,
    decode_workers,
    resolve_settings,
    run_pipeline,
)
from dbcli.errors import DBNetError
from dbcli.fileio import acquire_lock, release_lock
from dbcli.inputs import Input, expand_inputs, input_name, output_keys
from dbcli.pdf import DEFAULT_DPI
from dbcli.progress import plural, progress_bar, warn
from dbcli.writers import (  # noqa: F401
    FORMATS,
    JsonlWriter,
    Writer,
    done_files,
    file_key,
    icdar_name,
    make_writer,
    output_path,
    partial_path,
)


def _world() -> tuple[int, int]:
    # dbcli.device.world() reads the same variables but imports torch.
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _gather(local: list, size: int, error: str | None = None) -> list:
    """All ranks' lists, in rank order (torch.distributed over gloo: small Python objects, any
    backend/device). Every rank calls it, a failed one too (with its ``error``): then every rank
    raises ``DBNetError`` naming the failed ranks, instead of the others waiting for it forever."""
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    gathered: list = [None] * size
    try:
        dist.all_gather_object(gathered, (error, local))
    finally:
        if started:
            dist.destroy_process_group()
    errors = [f"rank {r}: {e}" for r, (e, _) in enumerate(gathered) if e is not None]
    if errors:
        raise DBNetError("detect failed on " + "; ".join(errors))
    return [item for _, part in gathered for item in part]


def _describe(exc: BaseException) -> str:
    """One line for an exception of this rank, as the other ranks will print it."""
    if isinstance(exc, DBNetError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


# --- the command ----------------------------------------------------------------------------------
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


def _check_request(fmt: str, out: Path | None, resume: bool, crops: Path | None = None) -> None:
    if fmt not in FORMATS:
        raise DBNetError(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    if fmt == "icdar" and out is None:
        raise DBNetError("--format icdar needs --out DIR")
    if resume and (fmt != "jsonl" or out is None):
        raise DBNetError("--resume continues a --format jsonl --out FILE output (the other formats are "
                         "written whole at the end)")
    if crops is not None and crops.exists() and not crops.is_dir():
        raise DBNetError(f"{crops}: exists and is not a directory (--crops writes one PNG per region into a folder)")


def _images_to_do(inputs: Sequence[str | os.PathLike], fmt: str, out: Path | None, resume: bool,
                  dpi: float = DEFAULT_DPI) -> tuple[list[Input], list[str], list[str], int]:
    """The images (files and PDF pages) of ``inputs``, less those a resumed output holds: ``(images,
    their output keys (``dbcli.inputs.output_keys``, the same whatever was done before), problems
    with the inputs, images done before)``. Raises ``DBNetError`` when there is nothing to do or two
    images would write the same ICDAR file."""
    paths, problems = expand_inputs(inputs, dpi)
    if not paths:
        raise DBNetError("no image to process: " + "; ".join(problems or ["no INPUT given"]))
    if fmt == "icdar":
        names: dict[str, Input] = {}
        for p in paths:
            other = names.setdefault(icdar_name(p), p)
            if other is not p:
                raise DBNetError(f"--format icdar: {input_name(other)} and {input_name(p)} would both write "
                                 f"{icdar_name(p)}")
    keys = output_keys(paths)
    n_resumed = 0
    if resume:
        assert out is not None  # (_check_request)
        _, done = done_files(out)
        todo = [i for i, p in enumerate(paths) if file_key(input_name(p)) not in done]
        n_resumed, paths, keys = len(paths) - len(todo), [paths[i] for i in todo], [keys[i] for i in todo]
    return paths, keys, problems, n_resumed


def _merge_ranks(results: list[ImageResult], failures: list[Failure], size: int, error: str | None
                 ) -> tuple[list[ImageResult], int]:
    """Under torchrun: every rank's results in input order, and how many images failed on any rank."""
    merged = _gather([(r.index, r.to_dict()) for r in results] + [(f.index, f.message) for f in failures],
                     size, error)
    merged.sort(key=lambda t: t[0])
    done = [ImageResult.from_dict(i, d) for i, d in merged if isinstance(d, dict)]
    return done, len(merged) - len(done)


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
        return DBNetError(f"{out}: cannot write ({exc.strerror or exc})")
    if kept and isinstance(exc, DBNetError):
        return DBNetError(f"{exc}; the images done are in {kept} (--resume continues it)")
    return exc


def detect(inputs: Sequence[str | os.PathLike], out: str | Path | None = None, fmt: str = "json",
           model: Model | None = None, settings: Settings | None = None, *, console=None,
           out_console=None, progress: bool = True, resume: bool = False, crops: str | Path | None = None,
           dpi: float = DEFAULT_DPI) -> DetectSummary:
    """Detect text in ``inputs`` and write ``out`` (see the module doc; with json and jsonl, a folder,
    existing or ending in ``/``, gets ``polygons.json`` / ``polygons.jsonl`` inside it, named in
    ``DetectSummary.out``). ``model`` and ``settings`` come from ``load_model`` and
    ``resolve_settings``. ``resume`` (jsonl): skip the images already in
    ``<out>.partial`` (an interrupted run) or ``out`` and append the others. ``crops``: a folder for
    one rectified PNG per detection, ``<key>_<NNN>.png`` (``dbcli.inputs.output_keys``, numbered
    from 1 in the detections' order), each named in its detection's ``crop`` entry. ``dpi``: the
    rendering resolution of PDF pages. Raises ``DBNetError`` when nothing could be processed, an
    option is wrong, or another process writes ``out``; ``DetectInterrupted`` on Ctrl-C / SIGTERM.
    Per-file problems are warnings on ``console``."""
    from rich.console import Console

    console = console or Console(stderr=True)
    out_console = out_console or Console()
    settings = settings or Settings()
    if model is None:
        model = load_model()
    fmt = (fmt or "json").lower()
    out = output_path(out, fmt)  # json / jsonl into a folder (``results/``): results/polygons.json
    crops = Path(crops) if crops is not None else None
    _check_request(fmt, out, resume, crops)

    paths, keys, problems, n_resumed = _images_to_do(inputs, fmt, out, resume, dpi)
    rank, size = _world()
    lead = rank == 0
    mine = list(range(rank, len(paths), size))  # torchrun: every rank takes every size-th image
    start = time.perf_counter()
    failures: list[Failure] = []
    results: list[ImageResult] = []
    n_dets = n_crops = 0
    writer: Writer | None = None
    lock = None
    try:
        error = None
        try:  # this rank's share; under torchrun a failure is handed to _gather, not left to hang it
            if lead and out is not None:
                try:
                    lock = acquire_lock(out)
                except OSError as exc:
                    raise DBNetError(f"{out}: cannot write ({exc.strerror or exc})") from None
            if size == 1:
                try:
                    writer = make_writer(out, fmt, out_console, resume)
                except OSError as exc:
                    raise DBNetError(f"{out}: cannot write ({exc.strerror or exc})") from None
            for problem in ([model.note] if model.note else []) + problems if lead else []:
                warn(console, problem)
            label = "detect" if size == 1 else f"detect (rank {rank}/{size})"
            bar = progress_bar(console if lead and progress else Console(quiet=True), label, len(mine))
            with bar:
                task = bar.add_task(label, total=len(mine))
                for item in run_pipeline([paths[i] for i in mine], model, settings, indices=mine,
                                         with_crops=crops is not None, on_done=lambda: bar.advance(task)):
                    if isinstance(item, Failure):
                        failures.append(item)
                        warn(console, f"{item.message}; skipped")
                        continue
                    for note in item.messages():
                        warn(console, note)
                    n_dets += len(item.detections)
                    if crops is not None:
                        assert item.crops is not None  # (with_crops)
                        item.crop_files = [str(p) for p in write_crops(item.crops, crops, keys[item.index])]
                        n_crops += len(item.crop_files)
                        item.crops = None  # written: let the pixels go
                    if writer is not None:
                        writer.add(item)
                    else:
                        results.append(item)
        except BaseException as exc:
            if size == 1:
                raise
            error = _describe(exc)
        if size > 1:  # rank 0 merges every rank's results and writes them in input order
            done_here, n_failed = _merge_ranks(results, failures, size, error)
            n_images, n_dets = len(done_here), sum(len(r.detections) for r in done_here)
            n_crops = sum(len(r.crop_files or []) for r in done_here)
            if (n_images or n_resumed) and lead:
                writer = make_writer(out, fmt, out_console, resume)
                for result in done_here:
                    writer.add(result)
        else:
            n_images, n_failed = len(mine) - len(failures), len(failures)
        if n_images == 0 and n_resumed == 0:
            raise DBNetError(f"no image could be processed ({plural(n_failed + len(problems), 'input')} failed)")
        if writer is not None:
            writer.close(model.info, settings.to_dict())
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        replacement = _failure(exc, writer, fmt, out)
        if replacement is exc:
            raise
        raise replacement from None
    finally:
        release_lock(lock)
    return DetectSummary(n_images, n_failed + len(problems), n_dets, out, time.perf_counter() - start, lead,
                         n_resumed, n_crops)
