"""Where ``dbnet detect`` puts its results: one JSON file, JSON Lines streamed to ``<out>.partial``
(resumable), ICDAR ``res_<stem>.txt`` files, or a summary table on stdout; and ``--crops``' PNG files.

A writer reads an image's result through ``Record`` (what ``dbcli.engine.records.ImageRecord``
gives), so that this layer imports nothing of the engine."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    fit_name,
    json_text,
    replaced_path,
    sibling,
)
from dbcli.outputs.paths import Protected, in_place, is_stdout, output_file, write_output
from dbcli.progress import plural

FORMATS = ("json", "jsonl", "icdar")
DEFAULT_NAME = "polygons"  # the file written inside a folder given as --out for json / jsonl


class Record(Protocol):
    """What a writer reads of one image's result (``dbcli.engine.records.ImageRecord``): its name,
    its size in pixels, its detections (each with ``points`` ``(K, 2)`` and ``score``) and its JSON
    entry."""

    @property
    def file(self) -> str: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def detections(self) -> Sequence[Any]: ...

    def to_dict(self) -> dict: ...


class PageLike(Protocol):
    """A PDF page (``dbcli.engine.pdf.PdfPage``): ``stem`` names its output files (``report_p3``)."""

    @property
    def stem(self) -> str: ...


def output_path(out: str | os.PathLike | None, fmt: str) -> Path | None:
    """The file or folder ``--out`` names for ``fmt``. For json and jsonl, a path that ends in a
    separator (``results/``) or is an existing folder is a folder: the output is
    ``<folder>/polygons.json`` (``.jsonl``) inside it, not a file named ``results``; ``-`` is stdout
    (``dbcli.outputs.paths.output_file``). For icdar the path is the folder itself."""
    if out is None:
        return None
    if fmt in ("json", "jsonl"):
        return output_file(out, f"{DEFAULT_NAME}.{fmt}")
    return Path(out)


def detect_json(model_info: dict, settings: dict, images: list[dict]) -> dict:
    """The document ``dbnet detect --format json`` writes (and ``dbnet serve`` answers): the model,
    the settings and one entry per image or page (``ImageResult.to_dict``)."""
    return {"model": model_info, "settings": settings, "images": images}


class Writer:
    """Receives results in input order; ``close`` finishes the output (atomically)."""

    def add(self, result: Record) -> None:
        raise NotImplementedError

    def close(self, model_info: dict, settings: dict) -> None:
        pass

    def abort(self) -> None:
        pass


class JsonWriter(Writer):
    """The whole file at the end (atomically; stdout for ``-``, a device or FIFO written into); its
    folder is made and probed for writing up front, so that a long job does not fail only after its
    last image."""

    def __init__(self, path: Path):
        self.path = path if is_stdout(path) else check_writable(path)
        self.images: list[dict] = []

    def add(self, result: Record) -> None:
        self.images.append(result.to_dict())

    def close(self, model_info: dict, settings: dict) -> None:
        text = json_text(detect_json(model_info, settings, self.images), indent=1)
        write_output(self.path, (text + "\n").encode("utf-8"))


def partial_path(out: Path) -> Path:
    """Where ``--format jsonl`` streams its lines until the run ends: ``<out>.partial`` (its name
    shortened when that passes the file-name limit: ``dbcli.outputs.atomic.sibling``)."""
    return sibling(out, ".partial")


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
    """One image per line, appended to ``<out>.partial`` (written line by line, unbuffered) and renamed
    to ``out`` at the end. An interrupted run (Ctrl-C, SIGTERM, a kill) or a full disk leaves the
    images done in the ``.partial`` file; ``resume`` continues it (or a finished ``out``, to add images
    to it). Stdout (``-``), a device or a FIFO gets the lines directly, as they come."""

    def __init__(self, path: Path, resume: bool = False):
        self.path, self.lines = path, 0
        self.direct = in_place(path)
        self.tmp: Path | None = None
        if self.direct:
            if resume:
                raise DBNetError(f"{path}: --resume continues a file; it cannot continue stdout, a device or a FIFO")
            self.file: Any = sys.stdout.buffer if is_stdout(path) else open(path, "wb", buffering=0)
            return
        self.tmp = partial_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resume and self.tmp.exists():
            raise DBNetError(f"{self.tmp}: an interrupted run's output; pass --resume to continue it, or "
                             "delete it to start over")
        if resume and not self.tmp.exists() and path.is_file():
            shutil.copyfile(path, self.tmp)  # the finished file stays whole until the final rename
        if resume and self.tmp.exists():
            lines, end = _complete_lines(self.tmp)
            self.lines = sum(1 for line in lines if line.strip())
            with open(self.tmp, "r+b") as f:  # drop a last line cut off by a killed process
                f.truncate(end)
        # Unbuffered: a line is on disk when add returns, and nothing is left to flush (again) when a
        # full disk aborts the run.
        self.file = open(self.tmp, "ab" if resume else "wb", buffering=0)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.file.write(view)
            view = view[written if written is not None else len(view):]
        if self.direct:
            self.file.flush()

    def add(self, result: Record) -> None:
        self._write((json_text(result.to_dict()) + "\n").encode("utf-8"))
        self.lines += 1

    def close(self, model_info: dict, settings: dict) -> None:
        if self.tmp is None:
            self.file.flush()
            if not is_stdout(self.path):
                self.file.close()
            return
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, replaced_path(self.path))

    def abort(self) -> None:
        """Keep the ``.partial`` file when it holds any image (the work done survives), else remove it.
        Never raises (nothing is buffered, so closing writes nothing)."""
        if not (self.file.closed or is_stdout(self.path)):
            try:
                self.file.close()
            except OSError:
                pass
        if self.tmp is not None and self.lines == 0:
            self.tmp.unlink(missing_ok=True)

    def kept(self) -> Path | None:
        """The ``.partial`` file an aborted run left, or None."""
        return self.tmp if self.tmp is not None and self.tmp.exists() else None


def icdar_lines(result: Record) -> str:
    """Robust Reading submission lines: ``x1,y1,...,xn,yn,score`` (integer pixels), and with the text
    read (``--text``) ``x1,...,yn,score,text``: the rest of the line is the text, commas kept (as ICDAR
    end-to-end files hold it; line breaks in it become spaces)."""
    lines = []
    for det in result.detections:
        coords = ",".join(str(int(round(float(v)))) for v in np.asarray(det.points).reshape(-1))
        text = getattr(det, "text", None)
        tail = "" if text is None else "," + " ".join(str(text).splitlines())
        lines.append(f"{coords},{float(det.score):.4f}{tail}")
    return "".join(line + "\n" for line in lines)


def icdar_name(file: str | os.PathLike | PageLike) -> str:
    """``res_<stem>.txt``; a PDF page (or its name ``report.pdf#page=3``) gives ``res_report_p3.txt``
    (a name past the 255-byte limit is shortened: ``dbcli.outputs.atomic.fit_name``)."""
    if not isinstance(file, (str, os.PathLike)):  # a PDF page
        return fit_name(f"res_{file.stem}.txt")
    base, sep, page = str(file).rpartition("#page=")
    if sep and page.isdigit():
        return fit_name(f"res_{Path(base).stem}_p{page}.txt")
    return fit_name(f"res_{Path(file).stem}.txt")


class IcdarWriter(Writer):
    """One ``res_<stem>.txt`` per image (empty when nothing was found) in the folder ``path``."""

    def __init__(self, path: Path):
        if path.exists() and not path.is_dir():
            raise DBNetError(f"{path}: exists and is not a directory (--format icdar writes one file "
                             "per image into a folder)")
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def add(self, result: Record) -> None:
        atomic_write_text(self.path / icdar_name(result.file), icdar_lines(result))


class TableWriter(Writer):
    """No --out: a summary table on stdout."""

    MAX_ROWS = 50

    def __init__(self, console: Any):
        self.console, self.total, self.count = console, 0, 0
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, result: Record) -> None:
        self.count += 1
        self.total += len(result.detections)
        if len(self.rows) < self.MAX_ROWS:
            scores = [d.score for d in result.detections]
            self.rows.append((result.file, f"{result.width}x{result.height}", str(len(scores)),
                              f"{np.mean(scores):.3f}" if scores else "-"))

    def close(self, model_info: dict, settings: dict) -> None:
        from rich.table import Table

        table = Table(title=f"dbnet detect: {plural(self.count, 'image')}, {plural(self.total, 'text region')}")
        table.add_column("file", overflow="fold")
        table.add_column("size", justify="right")
        table.add_column("regions", justify="right")
        table.add_column("mean score", justify="right")
        for row in self.rows:
            table.add_row(*row)
        if self.count > len(self.rows):
            table.add_row(f"... {self.count - len(self.rows)} more", "", "", "")
        self.console.print(table)


def make_writer(out: Path | None, fmt: str, console: Any, resume: bool = False) -> Writer:
    """The writer for ``fmt`` and ``out`` (None: the summary table on ``console``)."""
    if fmt not in FORMATS:
        raise DBNetError(f"unknown --format {fmt!r} ({', '.join(FORMATS)})")
    if out is None:
        if fmt == "icdar":
            raise DBNetError("--format icdar needs --out DIR")
        return TableWriter(console)
    if fmt == "icdar":
        return IcdarWriter(out)
    if not is_stdout(out) and out.is_dir():
        raise DBNetError(f"{out}: is a directory; --out needs a file name for --format {fmt}")
    return JsonlWriter(out, resume) if fmt == "jsonl" else JsonWriter(out)


def crop_name(key: str, number: int) -> str:
    """The file name of a region's crop: ``<key>_<number>.png``, the number (from 1, in the order of
    the detections) with at least 3 digits, so that a folder listing keeps reading order. A name past
    the 255-byte limit has its stem shortened (``dbcli.outputs.atomic.fit_name``)."""
    folder, stem = os.path.split(key)
    return os.path.join(folder, fit_name(f"{stem}_{number:03d}.png"))


def write_crops(crops: Sequence[np.ndarray], folder: Path, key: str, protected: Protected | None = None
                ) -> list[Path]:
    """Write ``crops`` as PNG files ``folder / crop_name(key, k)`` (``key`` may hold sub-folders),
    each atomically (temp file + rename; not fsynced one by one: they are re-created by running
    again); returns their paths. Raises ``DBNetError`` naming a file that cannot be written, or one
    that is ``protected`` (an input)."""
    paths = []
    for number, crop in enumerate(crops, 1):
        path = folder / crop_name(key, number)
        if protected is not None:
            protected.check(path, "--crops", folder, "the crop")
        ok, data = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DBNetError(f"{path}: PNG encoding failed")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            paths.append(atomic_write_bytes(path, data.tobytes(), durable=False))  # renamed in, not fsynced
        except OSError as exc:
            raise DBNetError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return paths
