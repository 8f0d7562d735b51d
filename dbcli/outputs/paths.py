"""Where a command may write: every writer (detect's JSON / JSONL / ICDAR, ``--crops``, visualize's
drawings, ``eval --json``, export, convert) checks its targets here before any work.

- **Never an input or a weights file**: ``Protected`` holds the files a run reads (its images, its
  predictions file, its weights and the shipped ones, a dataset folder), by identity (device and
  inode: a symlink or a hard link to an input is that input). A target that is one of them is refused
  with one line naming both paths; no option overrides that.
- **Never someone else's file**: an existing file that does not look like what the writer makes
  (``replaceable``: a detect JSON, an eval report, an export) is refused unless ``--overwrite``;
  replacing one's own earlier output is normal use.
- **``-`` is stdout** (``is_stdout``; JSON and JSONL), and devices, FIFOs and ``/proc`` links are
  written into, not replaced (``dbcli.outputs.atomic.writes_in_place``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import atomic_write_bytes, writes_in_place

STDOUT = "-"  # --out - : the output goes to stdout
_SNIFF_BYTES = 1 << 16


def is_stdout(out: str | os.PathLike | None) -> bool:
    """Whether ``out`` is ``-`` (stdout). A file named ``-`` is ``./-``, which output paths keep
    apart (``output_file``)."""
    return out is not None and os.fspath(out) == STDOUT


def output_file(text: str | os.PathLike, default_name: str) -> Path:
    """The file an ``--out`` naming a file or a folder means: a path that ends in a separator
    (``results/``) or is an existing folder is a folder, and the file is ``default_name`` inside it.
    ``-`` stays ``-`` (stdout) and ``./-`` becomes an absolute path so as not to be taken for it."""
    text = os.fspath(text)
    if text == STDOUT:
        return Path(STDOUT)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return path / default_name
    return path.absolute() if str(path) == STDOUT else path


def in_place(out: Path | None) -> bool:
    """Whether ``out`` is stdout or a target written into directly (a device, a FIFO, ``/proc``): no
    lock, no ``.partial`` file, no rename."""
    return out is not None and (is_stdout(out) or writes_in_place(out))


def write_stdout(data: bytes) -> None:
    """``data`` to stdout (its byte stream), flushed."""
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        stream.write(data)
    sys.stdout.flush()


def write_output(path: Path, data: bytes) -> Path:
    """``data`` to ``path``: stdout for ``-``, else ``dbcli.outputs.atomic.atomic_write_bytes`` (which writes
    devices and FIFOs in place and a symlink's target). Raises ``OSError``."""
    if is_stdout(path):
        write_stdout(data)
        return path
    return atomic_write_bytes(path, data)


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class Protected:
    """Files (and folders) an output must never replace, each with what it is (``the input``,
    ``the weights file``, ...), compared by identity."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], tuple[str, str]] = {}
        self._folders: list[tuple[str, str, str]] = []  # (real path, role, name)

    def add(self, paths: Iterable[str | os.PathLike | None], role: str) -> Protected:
        """Protect the existing files ``paths`` (others are skipped) as ``role``; returns self."""
        for path in paths:
            if path is None:
                continue
            key = _identity(path)
            if key is not None:
                self._files.setdefault(key, (role, os.fspath(path)))
        return self

    def add_folder(self, folder: str | os.PathLike | None, role: str) -> Protected:
        """Protect every existing file below ``folder`` (a dataset) as ``role``."""
        if folder is not None and Path(folder).is_dir():
            self._folders.append((os.path.realpath(folder), role, os.fspath(folder)))
        return self

    def owner(self, path: str | os.PathLike) -> str | None:
        """``the input a.jpg`` when ``path`` is a protected file, else None (also when it does not exist)."""
        key = _identity(path)
        if key is None:
            return None
        if key in self._files:
            role, name = self._files[key]
            return f"{role} {name}"
        real = os.path.realpath(path)
        for folder, role, name in self._folders:
            if os.path.isfile(real) and real.startswith(folder.rstrip(os.sep) + os.sep):
                return f"{role} {name}"
        return None

    def check(self, path: str | os.PathLike, option: str, given: str | os.PathLike | None = None,
              what: str = "") -> None:
        """``DBNetError`` when writing ``path`` would replace a protected file; the message names both.
        ``option`` names the path (``--out``); for a file made inside the folder ``given`` (crops,
        drawings), ``what`` says what the file is (``the crop``)."""
        owner = self.owner(path)
        if owner is None:
            return
        if given is None:
            raise DBNetError(f"{option} {path} would replace {owner}; choose another {option}")
        raise DBNetError(f"{option} {given}: {what} {path} would replace {owner}; choose another {option}")


def _head(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def detect_json(path: Path) -> bool:
    """A ``dbnet detect`` JSON file (or an empty one)."""
    head = _head(path).lstrip()
    return not head or (head.startswith(b"{") and (b'"images"' in head or b'"model"' in head))


def detect_jsonl(path: Path) -> bool:
    """A ``dbnet detect`` JSON Lines file (or an empty one): its first line an entry with ``file``."""
    first = _head(path).lstrip().split(b"\n", 1)[0]
    if not first:
        return True
    try:
        entry = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(entry, dict) and "file" in entry


def eval_report(path: Path) -> bool:
    """A ``dbnet eval --json`` report (or an empty file): one JSON object with ``dataset``."""
    if path.stat().st_size > 8 * _SNIFF_BYTES:
        return False
    text = path.read_bytes().strip()
    if not text:
        return True
    try:
        report = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(report, dict) and "dataset" in report


def model_export(path: Path) -> bool:
    """A ``dbnet export`` file: an ONNX model carrying ``dbnet.format`` or a TorchScript archive with
    ``dbnet.json`` (or an empty file)."""
    import zipfile

    if path.stat().st_size == 0:
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("extra/dbnet.json") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        pass
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - _SNIFF_BYTES))
        return b"dbnet.format" in f.read()


def nothing_ours(path: Path) -> bool:
    """For writers whose every existing target is earlier work (a weights file): never replaceable
    without ``--overwrite``."""
    return False


def check_replace(path: Path, option: str, ours: Callable[[Path], bool], what: str, overwrite: bool) -> None:
    """``DBNetError`` when ``path`` is an existing regular file that ``ours`` does not recognise as
    ``what`` this writer makes (someone's earlier work; ``what`` ``""``: any existing file) and
    ``overwrite`` is off. Stdout, devices, FIFOs and missing files pass."""
    if overwrite or in_place(path) or not path.is_file():
        return
    try:
        recognised = ours(path)
    except OSError:
        recognised = False
    if not recognised:
        kind = f" and is not {what}" if what else ""
        raise DBNetError(f"{option} {path}: the file exists{kind}; pass --overwrite to replace it, or choose "
                         "another name")


def check_file_output(out: Path, option: str, protected: Protected, ours: Callable[[Path], bool], what: str,
                      overwrite: bool) -> None:
    """Everything a one-file writer checks before its work: ``out`` is not a folder, not a
    ``protected`` file, not someone else's file (``check_replace``) and can be written. Raises
    ``DBNetError``."""
    from dbcli.outputs.atomic import check_writable

    if out.is_dir():
        raise DBNetError(f"{out}: is a directory; {option} needs a file name")
    protected.check(out, option)
    check_replace(out, option, ours, what, overwrite)
    try:
        check_writable(out)
    except OSError as exc:
        raise DBNetError(f"{out}: cannot write ({exc.strerror or exc})") from None
