"""Opening the files dbnet reads: regular files only, refused by type before anything opens them.

A FIFO (named pipe) given where a file is expected blocks its reader forever (onnxruntime, torch.load,
a hash), a device never ends (``/dev/zero``) and a folder is not a file: ``check_regular_file`` says so
in one line naming the file (``DBNetError``), and ``open_regular`` opens a file without ever blocking
on a FIFO that took its place meanwhile (``O_NONBLOCK``, then the type of what was opened is checked).
Symlinks are followed: the type checked is that of the file they lead to.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import BinaryIO

from dbcli.errors import DBNetError


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words: ``"a regular file"``, ``"a folder"``,
    ``"a FIFO (named pipe)"``, ``"a socket"``, ``"a device"``."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def not_regular(path: str | os.PathLike, mode: int, what: str = "file") -> DBNetError:
    """The error for ``path`` (of ``st_mode`` ``mode``), which is not a regular file: ``<path>: a FIFO
    (named pipe), not a regular file (<what> expected; not opened: it could block forever)``, or for a
    folder ``<path>: a folder, not a <what>``."""
    if stat.S_ISDIR(mode):  # ``<path>: a folder, not an image file``
        article = "an" if what[:1].lower() in "aeiou" else "a"
        return DBNetError(f"{os.fspath(path)}: a folder, not {article} {what}")
    return DBNetError(f"{os.fspath(path)}: {kind_of(mode)}, not a regular file ({what} expected; not opened: it "
                      "could block forever)")


def check_regular_file(path: str | os.PathLike, what: str = "file", missing_hint: str = "", *,
                       missing_ok: bool = False) -> os.stat_result | None:
    """``path``'s ``os.stat`` when it is a regular file (symlinks followed), else ``DBNetError`` naming it:
    missing (``<path>: <what> not found<missing_hint>``; with ``missing_ok`` None is returned instead, for
    readers that say so in their own words), a folder, a FIFO, a device or a socket, or unreadable (a
    name too long, a folder without search permission, a symlink loop). The one type check of every
    file dbnet reads: images, weights, checkpoints, datasets, predictions, models to convert."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        if missing_hint.startswith(": "):  # the caller's own words for a missing file
            raise DBNetError(f"{os.fspath(path)}{missing_hint}") from None
        raise DBNetError(f"{os.fspath(path)}: {what} not found{missing_hint}") from None
    except OSError as exc:
        raise DBNetError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode, what)
    return st


def open_regular(path: str | os.PathLike, what: str = "file", missing_hint: str = "") -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file (``check_regular_file``); the
    file opened is checked again (``fstat``), so a FIFO swapped in after the check is refused, not
    waited on. Raises ``DBNetError`` naming the file. Close it (``with open_regular(p) as f``)."""
    check_regular_file(path, what, missing_hint)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DBNetError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(path, mode, what)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, what: str = "file") -> bytes:
    """All of ``path``'s bytes (``open_regular``: a regular file only). Raises ``DBNetError``."""
    with open_regular(path, what) as f:
        try:
            return f.read()
        except OSError as exc:
            raise DBNetError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (symlinks followed), without raising: a name too long or a
    folder without search permission is ``False`` (``Path.is_file`` raises there)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


__all__ = ["check_regular_file", "is_regular_file", "kind_of", "not_regular", "open_regular",
           "read_regular"]


def file_sha256(path: str | os.PathLike, what: str = "file") -> str:
    """The hex SHA-256 of ``path``'s bytes (a regular file only, read in 1 MiB chunks): the key of the
    ONNX cache, the pins of the shipped models, the weights digest ``dbnet serve`` shows. Raises
    ``DBNetError`` naming the file when it is not a regular file or cannot be read."""
    digest = hashlib.sha256()
    with open_regular(path, what) as f:
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        except OSError as exc:
            raise DBNetError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()
