"""``dbnet detect``: images -> text polygons, for the torch and the torch-free ONNX backend.

Pipeline: expand the INPUTs to image files; decode + resize + normalise in a thread pool that runs
ahead of the network (so decoding overlaps inference); group prepared images of the same network
input size into batches of ``batch_size`` (same-size batches need no padding, so the results never
depend on the batch size or on which images share a batch); post-process each probability map
(``dbcli.postprocess``); hand the results, in input order, to a writer (JSON, JSONL, ICDAR txt files
or a summary table).

This module must not import torch at module level: ``--backend onnx`` runs without it. Only the
torch backend and the multi-process (torchrun) merge import it, lazily.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dbcli.errors import DBNetError
from dbcli.fileio import acquire_lock, atomic_write_json, atomic_write_text, check_writable, release_lock
from dbcli.imaging import (DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS, check_sides, decode_image,
                           default_cap_note, prepare)
from dbcli.postprocess import Detection, PostConfig, boxes_from_prob_map, post_config_from

ProbFn = Callable[[np.ndarray], np.ndarray]
MapsFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
FORMATS = ("json", "jsonl", "icdar")
DEFAULT_SHORT_SIDE = 736


# --- inputs ---------------------------------------------------------------------------------------
def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _images_in(directory: Path) -> list[Path]:
    return sorted((p for p in directory.rglob("*") if _is_image_name(p) and p.is_file()), key=str)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files as given (any extension: a non-image gets a decode warning later), directories
    recursively (image extensions only), glob patterns (``*``, ``?``, ``[...]``, ``**``; matched
    files with image extensions, matched directories recursively). Returns ``(paths, problems)``:
    duplicates removed, order kept; ``problems`` names inputs that matched nothing."""
    paths: list[Path] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in inputs:
        text = os.fspath(item)
        if not text.strip():  # "$UNSET" must not mean the current directory
            raise DBNetError("an empty INPUT argument (an unset shell variable?); name files, folders or "
                             "patterns (. for the current directory)")
        p = Path(text)
        if p.is_dir():
            found = _images_in(p)
            if not found:
                problems.append(f"{text}: no image files in this directory")
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            found = []
            for m in map(Path, matches):
                if m.is_dir():
                    found.extend(_images_in(m))
                elif m.is_file() and _is_image_name(m):
                    found.append(m)
            if not found:
                problems.append(f"{text}: the pattern matches no image file")
            for f in found:
                add(f)
        else:
            problems.append(f"{text}: no such file or directory")
    return paths, problems


# --- model and settings ---------------------------------------------------------------------------
@dataclass
class Model:
    """A loaded backend: ``prob_fn`` (and ``maps_fn`` giving (P, T) for visualisation, torch only),
    the ``model`` entry of the output JSON, and the defaults stored with the weights."""

    prob_fn: ProbFn
    info: dict
    postprocess: dict = field(default_factory=dict)
    short_side: int | None = None
    maps_fn: MapsFn | None = None
    uses_torch: bool = False
    note: str | None = None  # said once before the work starts (e.g. an emulated precision)


def default_weights(backend: str) -> Path:
    from dbcli.weights import default_weights_path  # torch-free at import

    path = default_weights_path()
    return path.with_suffix(".onnx") if backend == "onnx" else path


def weights_path(weights: str | Path | None, backend: str) -> Path:
    """The file behind ``--weights`` (a path or a shipped short name) for ``backend``."""
    from dbcli.weights import resolve_weights

    return Path(resolve_weights(weights)) if weights is not None else default_weights(backend)


def onnx_precision(precision: str | None) -> str:
    """The ONNX backend runs in fp32 only: ``"fp32"``, or ``DBNetError`` for any other ``--precision``."""
    precision = (precision or "fp32").lower()
    if precision != "fp32":
        raise DBNetError(f"--precision {precision} needs the torch backend (the ONNX model runs in fp32)")
    return precision


def load_model(weights: str | Path | None = None, backend: str | None = None, device: str = "auto",
               precision: str = "fp32") -> Model:
    """``backend`` None: ``onnx`` for a ``.onnx`` weights file, else ``torch``. ``precision`` (torch
    backend): fp32, bf16 or fp16 (see ``inference.TorchBackend``)."""
    if backend is None:
        backend = "onnx" if weights is not None and Path(weights).suffix.lower() == ".onnx" else "torch"
    backend = backend.lower()
    if backend == "onnx":
        onnx_precision(precision)
        from dbcli.onnx_backend import OnnxBackend

        path = weights_path(weights, backend)
        if path.suffix.lower() == ".pt":
            raise DBNetError(f"{path}: a PyTorch weights file; export it first "
                             f"(dbnet export --weights {path} --format onnx --out model.onnx)")
        runner = OnnxBackend(path, device)
        info = {"weights": str(path), "backend": "onnx", "device": runner.device, "dtype": "fp32",
                **runner.model_config}
        return Model(runner, info, runner.postprocess, runner.short_side)
    if backend == "torch":
        from dbcli.inference import TorchBackend
        from dbcli.weights import load_weights

        data = load_weights(weights)
        runner = TorchBackend(data, device, precision or "fp32")
        info = {"weights": data["path"], "backend": "torch", "device": str(runner.device),
                "dtype": runner.precision, **data["model"]}
        return Model(runner, info, data.get("postprocess") or {}, data.get("short_side"),
                     maps_fn=runner.thresh_maps, uses_torch=True, note=runner.note)
    raise DBNetError(f"unknown backend {backend!r} (torch or onnx)")


@dataclass(frozen=True)
class Settings:
    short_side: int = DEFAULT_SHORT_SIDE
    max_side: int | None = None
    post: PostConfig = PostConfig()
    batch_size: int = 1
    exif: bool = True
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS  # larger images are refused (bombs)

    def to_dict(self) -> dict:
        return {"short_side": self.short_side, "max_side": self.max_side, **asdict(self.post),
                "exif": self.exif, "batch_size": self.batch_size}


def resolve_settings(model: Model, short_side: int | None = None, max_side: int | None = None,
                     thresh: float | None = None, box_thresh: float | None = None,
                     unclip_ratio: float | None = None, polygon: bool | None = None,
                     batch_size: int | None = None, exif: bool = True,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     max_candidates: int | None = None) -> Settings:
    """Options given on the command line win; else the weights file's stored values; else the
    library defaults (``PostConfig``, short side 736). ``batch_size`` None: 8 on CUDA, 1 elsewhere
    (on a CPU a larger batch only adds memory traffic: batch 4 is ~20% slower per image).
    ``max_megapixels``: images of more pixels are refused (``None``: no limit)."""
    config = post_config_from(model.postprocess, thresh=thresh, box_thresh=box_thresh,
                              unclip_ratio=unclip_ratio, polygon=polygon, max_candidates=max_candidates)
    side = short_side if short_side is not None else (model.short_side or DEFAULT_SHORT_SIDE)
    for name, value in (("thresh", config.thresh), ("box-thresh", config.box_thresh)):
        if not 0.0 <= value <= 1.0:
            raise DBNetError(f"--{name} must lie in [0, 1], got {value}")
    if config.unclip_ratio <= 0:
        raise DBNetError(f"--unclip-ratio must be positive, got {config.unclip_ratio}")
    check_sides(side, max_side)
    if config.max_candidates < 1:
        raise DBNetError(f"--max-candidates must be at least 1, got {config.max_candidates}")
    if max_megapixels is not None and not max_megapixels > 0:
        raise DBNetError(f"--max-megapixels must be positive, got {max_megapixels}")
    if batch_size is None:
        batch_size = 8 if str(model.info.get("device", "")).startswith("cuda") else 1
    if batch_size < 1:
        raise DBNetError(f"--batch-size must be at least 1, got {batch_size}")
    return Settings(int(side), max_side, config, int(batch_size), bool(exif), max_megapixels)


# --- the pipeline ---------------------------------------------------------------------------------
@dataclass
class ImageResult:
    index: int
    file: str
    width: int
    height: int
    detections: list[Detection]
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, kept only when asked for
    prob: np.ndarray | None = None  # network-resolution maps, only with maps
    thresh: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # one line each: a frame dropped, a size cap, ...

    def to_dict(self) -> dict:
        return {"file": self.file, "width": self.width, "height": self.height,
                "detections": [d.to_dict() for d in self.detections]}


@dataclass
class Failure:
    index: int
    file: str
    message: str


@dataclass
class Decoded:
    """One decoded input: its size in pixels, the image itself only when kept (the full-size image
    of a huge photo is dropped as soon as the network input is made), the network input and notes."""

    width: int
    height: int
    image: np.ndarray | None
    x: np.ndarray | None
    notes: list[str]


def _decode(path: Path, settings: Settings, network: bool, keep_image: bool) -> Decoded:
    image, notes = decode_image(path, settings.exif, settings.max_megapixels)
    height, width = image.shape[:2]
    x = None
    if network:
        note = default_cap_note(height, width, settings.short_side, settings.max_side)
        notes += [f"{path}: {note}"] if note else []
        x = prepare(image, settings.short_side, settings.max_side)
    return Decoded(width, height, image if keep_image or not network else None, x, notes)


def decode_workers() -> int:
    from dbcli.cpu import default_workers

    return default_workers(4)


def run_pipeline(paths: Sequence[Path], model: Model | None, settings: Settings, *,
                 keep_images: bool = False, with_maps: bool = False,
                 on_done: Callable[[], None] | None = None, indices: Sequence[int] | None = None
                 ) -> Iterator[ImageResult | Failure]:
    """Yield one ``ImageResult`` or ``Failure`` per path, in input order.

    ``model`` None: decode only (no detections). ``with_maps``: also the (P, T) maps, via
    ``model.maps_fn``. ``indices``: the global index of each path (for multi-process runs).
    ``on_done`` is called once per finished image (progress).
    """
    if with_maps and (model is None or model.maps_fn is None):
        raise DBNetError("probability/threshold maps need the torch backend (an ONNX export holds "
                         "only the probability map)")
    indices = list(range(len(paths))) if indices is None else list(indices)
    network = model is not None
    lookahead = 2 * settings.batch_size + decode_workers()
    max_buffered = 2 * settings.batch_size  # prepared images waiting in same-size buckets
    ready: dict[int, ImageResult | Failure] = {}
    order = deque(indices)
    buckets: dict[tuple, list] = {}

    def finish(item: ImageResult | Failure) -> None:
        ready[item.index] = item
        if on_done is not None:
            on_done()

    def flush(key: tuple) -> None:
        entries = buckets.pop(key)
        batch = np.stack([e[2].x for e in entries])
        if with_maps:
            probs, threshs = model.maps_fn(batch)
        else:
            probs, threshs = model.prob_fn(batch), None
        for j, (index, path, d) in enumerate(entries):
            prob = probs[j]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dets = boxes_from_prob_map(prob, d.width, d.height, settings.post)
            notes = d.notes + [f"{path}: {w.message}" for w in caught]
            finish(ImageResult(index, str(path), d.width, d.height, dets, d.image if keep_images else None,
                               prob if with_maps else None, threshs[j] if with_maps else None, notes))

    with ThreadPoolExecutor(decode_workers(), thread_name_prefix="dbnet-decode") as pool:
        jobs: deque = deque()
        todo = iter(zip(indices, paths))

        def refill() -> None:
            while len(jobs) < lookahead:
                try:
                    index, path = next(todo)
                except StopIteration:
                    return
                jobs.append((index, path, pool.submit(_decode, Path(path), settings, network, keep_images)))

        refill()
        while jobs or buckets:
            if jobs:
                index, path, future = jobs.popleft()
                refill()
                try:
                    d = future.result()
                except DBNetError as exc:
                    finish(Failure(index, str(path), str(exc)))
                except Exception as exc:  # a decoder crash must not stop the run
                    finish(Failure(index, str(path), f"{path}: cannot decode image "
                                                     f"({exc.__class__.__name__}: {exc})"))
                else:
                    if not network:
                        finish(ImageResult(index, str(path), d.width, d.height, [],
                                           d.image if keep_images else None, notes=d.notes))
                    else:
                        key = d.x.shape
                        buckets.setdefault(key, []).append((index, path, d))
                        if len(buckets[key]) >= settings.batch_size:
                            flush(key)
                        elif sum(len(b) for b in buckets.values()) > max_buffered:
                            flush(max(buckets, key=lambda k: len(buckets[k])))
            else:
                for key in list(buckets):
                    flush(key)
            while order and order[0] in ready:
                yield ready.pop(order.popleft())


# --- writers --------------------------------------------------------------------------------------
class Writer:
    """Receives results in input order; ``close`` finishes the output (atomically)."""

    def add(self, result: ImageResult) -> None:
        raise NotImplementedError

    def close(self, model_info: dict, settings: dict) -> None:
        pass

    def abort(self) -> None:
        pass


class JsonWriter(Writer):
    """The whole file at the end (atomically); its folder is made and probed for writing up front,
    so that a long job does not fail only after its last image."""

    def __init__(self, path: Path):
        self.path, self.images = check_writable(path), []

    def add(self, result: ImageResult) -> None:
        self.images.append(result.to_dict())

    def close(self, model_info: dict, settings: dict) -> None:
        atomic_write_json(self.path, {"model": model_info, "settings": settings, "images": self.images})


def partial_path(out: Path) -> Path:
    """Where ``--format jsonl`` streams its lines until the run ends: ``<out>.partial``."""
    return out.with_name(out.name + ".partial")


def _complete_lines(path: Path) -> tuple[list[str], int]:
    """The newline-terminated lines of ``path`` and their length in bytes (a last line cut off by a
    killed process is left out)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].decode("utf-8", errors="replace").splitlines(), end


def file_key(file: str | os.PathLike) -> str:
    """How an image is recognised across runs: its absolute, case-normalised path."""
    return os.path.normcase(os.path.abspath(os.fspath(file)))


def done_files(out: Path) -> tuple[Path | None, set[str]]:
    """For ``--resume``: the JSONL file to continue (``<out>.partial`` of an interrupted run, else a
    finished ``out``, else None) and the ``file_key`` of every image it holds. Raises ``DBNetError``
    naming the file and line when a line is not a ``dbnet detect`` image entry."""
    source = next((p for p in (partial_path(out), out) if p.is_file()), None)
    if source is None:
        return None, set()
    try:
        lines, _ = _complete_lines(source)
    except OSError as exc:
        raise DBNetError(f"{source}: cannot read ({exc.strerror or exc})") from None
    done = set()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise DBNetError(f"{source}:{lineno}: not a dbnet detect JSONL line; cannot resume from it")
        done.add(file_key(entry["file"]))
    return source, done


class JsonlWriter(Writer):
    """One image per line, appended to ``<out>.partial`` (flushed line by line) and renamed to ``out``
    at the end. An interrupted run (Ctrl-C, SIGTERM, a kill) leaves the images done in the
    ``.partial`` file; ``resume`` continues it (or a finished ``out``, to add images to it)."""

    def __init__(self, path: Path, resume: bool = False):
        self.path, self.tmp = path, partial_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resume and self.tmp.exists():
            raise DBNetError(f"{self.tmp}: an interrupted run's output; pass --resume to continue it, or "
                             "delete it to start over")
        if resume and not self.tmp.exists() and path.is_file():
            shutil.copyfile(path, self.tmp)  # the finished file stays whole until the final rename
        self.lines = 0
        if resume and self.tmp.exists():
            lines, end = _complete_lines(self.tmp)
            self.lines = sum(1 for line in lines if line.strip())
            with open(self.tmp, "r+b") as f:  # drop a last line cut off by a killed process
                f.truncate(end)
        self.file = open(self.tmp, "a" if resume else "w", encoding="utf-8")

    def add(self, result: ImageResult) -> None:
        self.file.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self.file.flush()
        self.lines += 1

    def close(self, model_info: dict, settings: dict) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Keep the ``.partial`` file when it holds any image (the work done survives), else remove it."""
        if not self.file.closed:
            self.file.close()
        if self.lines == 0:
            self.tmp.unlink(missing_ok=True)

    def kept(self) -> Path | None:
        """The ``.partial`` file an aborted run left, or None."""
        return self.tmp if self.tmp.exists() else None


def icdar_lines(result: ImageResult) -> str:
    """Robust Reading submission lines: ``x1,y1,...,xn,yn,score`` (integer pixels)."""
    lines = []
    for det in result.detections:
        coords = ",".join(str(int(round(float(v)))) for v in np.asarray(det.points).reshape(-1))
        lines.append(f"{coords},{float(det.score):.4f}")
    return "".join(line + "\n" for line in lines)


def icdar_name(file: str | Path) -> str:
    return f"res_{Path(file).stem}.txt"


class IcdarWriter(Writer):
    """One ``res_<stem>.txt`` per image (empty when nothing was found) in the folder ``path``."""

    def __init__(self, path: Path):
        if path.exists() and not path.is_dir():
            raise DBNetError(f"{path}: exists and is not a directory (--format icdar writes one file "
                             "per image into a folder)")
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def add(self, result: ImageResult) -> None:
        atomic_write_text(self.path / icdar_name(result.file), icdar_lines(result))


class TableWriter(Writer):
    """No --out: a summary table on stdout."""

    MAX_ROWS = 50

    def __init__(self, console):
        self.console, self.rows, self.total, self.count = console, [], 0, 0

    def add(self, result: ImageResult) -> None:
        self.count += 1
        self.total += len(result.detections)
        if len(self.rows) < self.MAX_ROWS:
            scores = [d.score for d in result.detections]
            self.rows.append((result.file, f"{result.width}x{result.height}", str(len(scores)),
                              f"{np.mean(scores):.3f}" if scores else "-"))

    def close(self, model_info: dict, settings: dict) -> None:
        from rich.table import Table

        table = Table(title=f"dbnet detect: {self.count} images, {self.total} text regions")
        table.add_column("file", overflow="fold")
        table.add_column("size", justify="right")
        table.add_column("regions", justify="right")
        table.add_column("mean score", justify="right")
        for row in self.rows:
            table.add_row(*row)
        if self.count > len(self.rows):
            table.add_row(f"... {self.count - len(self.rows)} more", "", "", "")
        self.console.print(table)


def make_writer(out: Path | None, fmt: str, console, resume: bool = False) -> Writer:
    if fmt not in FORMATS:
        raise DBNetError(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    if out is None:
        if fmt == "icdar":
            raise DBNetError("--format icdar needs --out DIR")
        return TableWriter(console)
    if fmt == "icdar":
        return IcdarWriter(out)
    if out.is_dir():
        raise DBNetError(f"{out}: is a directory; --out needs a file name for --format {fmt}")
    return JsonlWriter(out, resume) if fmt == "jsonl" else JsonWriter(out)


# --- progress and messages ------------------------------------------------------------------------
def _progress(console, total: int):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} images/s" if speed else "- images/s", style="progress.data.speed")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                    transient=False, disable=total == 0)


def warn(console, message: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True, highlight=False)


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


def _check_request(fmt: str, out: Path | None, resume: bool) -> None:
    if fmt not in FORMATS:
        raise DBNetError(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    if fmt == "icdar" and out is None:
        raise DBNetError("--format icdar needs --out DIR")
    if resume and (fmt != "jsonl" or out is None):
        raise DBNetError("--resume continues a --format jsonl --out FILE output (the other formats are "
                         "written whole at the end)")


def detect(inputs: Sequence[str | os.PathLike], out: str | Path | None = None, fmt: str = "json",
           model: Model | None = None, settings: Settings | None = None, *, console=None,
           out_console=None, progress: bool = True, resume: bool = False) -> DetectSummary:
    """Detect text in ``inputs`` and write ``out`` (see the module doc). ``model`` and ``settings``
    come from ``load_model`` and ``resolve_settings``. ``resume`` (jsonl): skip the images already in
    ``<out>.partial`` (an interrupted run) or ``out`` and append the others. Raises ``DBNetError``
    when nothing could be processed, an option is wrong, or another process writes ``out``;
    ``DetectInterrupted`` on Ctrl-C / SIGTERM. Per-file problems are warnings on ``console``."""
    from rich.console import Console

    console = console or Console(stderr=True)
    out_console = out_console or Console()
    settings = settings or Settings()
    if model is None:
        model = load_model()
    fmt = (fmt or "json").lower()
    out = Path(out) if out is not None else None
    _check_request(fmt, out, resume)

    paths, problems = expand_inputs(inputs)
    if not paths:
        raise DBNetError("no image to process: " + "; ".join(problems or ["no INPUT given"]))
    if fmt == "icdar":
        names: dict[str, Path] = {}
        for p in paths:
            other = names.setdefault(icdar_name(p), p)
            if other is not p:
                raise DBNetError(f"--format icdar: {other} and {p} would both write {icdar_name(p)}")
    n_resumed = 0
    if resume:
        _, done = done_files(out)
        todo = [p for p in paths if file_key(p) not in done]
        n_resumed, paths = len(paths) - len(todo), todo

    rank, size = _world()
    lead = rank == 0
    mine = list(range(rank, len(paths), size))  # torchrun: every rank takes every size-th image
    start = time.perf_counter()
    failures: list[Failure] = []
    results: list[ImageResult] = []
    n_dets = 0
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
            bar = _progress(console if lead and progress else Console(quiet=True), len(mine))
            with bar:
                task = bar.add_task("detect" if size == 1 else f"detect (rank {rank}/{size})", total=len(mine))
                for item in run_pipeline([paths[i] for i in mine], model, settings, indices=mine,
                                         on_done=lambda: bar.advance(task)):
                    if isinstance(item, Failure):
                        failures.append(item)
                        warn(console, f"{item.message}; skipped")
                        continue
                    for note in item.notes:
                        warn(console, note)
                    n_dets += len(item.detections)
                    if writer is not None:
                        writer.add(item)
                    else:
                        results.append(item)
        except BaseException as exc:
            if size == 1:
                raise
            error = _describe(exc)
        if size > 1:  # rank 0 merges every rank's results and writes them in input order
            merged = _gather([(r.index, r.to_dict()) for r in results]
                             + [(f.index, f.message) for f in failures], size, error)
            merged.sort(key=lambda t: t[0])
            done_here = [(i, d) for i, d in merged if isinstance(d, dict)]
            n_images, n_failed = len(done_here), len(merged) - len(done_here)
            n_dets = sum(len(d["detections"]) for _, d in done_here)
            if (n_images or n_resumed) and lead:
                writer = make_writer(out, fmt, out_console, resume)
                for i, d in done_here:
                    writer.add(ImageResult(i, d["file"], d["width"], d["height"], [
                        Detection(np.asarray(x["points"], np.float64), x["score"]) for x in d["detections"]]))
        else:
            n_images, n_failed = len(mine) - len(failures), len(failures)
        if n_images == 0 and n_resumed == 0:
            raise DBNetError(f"no image could be processed ({n_failed + len(problems)} inputs failed)")
        if writer is not None:
            writer.close(model.info, settings.to_dict())
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        kept = writer.kept() if isinstance(writer, JsonlWriter) else None
        if isinstance(exc, KeyboardInterrupt):
            if fmt == "icdar":
                where = f"the images done have their {icdar_name('<stem>')} files in {out}"
            else:
                where = (f"the images done are in {kept}; run the same command with --resume to continue"
                         if kept else "nothing was written")
            raise DetectInterrupted(f"interrupted: {where}") from None
        if isinstance(exc, OSError):  # decoding problems are per-file warnings: this is the output
            raise DBNetError(f"{out}: cannot write ({exc.strerror or exc})") from None
        if kept and isinstance(exc, DBNetError):
            raise DBNetError(f"{exc}; the images done are in {kept} (--resume continues it)") from None
        raise
    finally:
        release_lock(lock)
    return DetectSummary(n_images, n_failed + len(problems), n_dets, out, time.perf_counter() - start, lead,
                         n_resumed)
