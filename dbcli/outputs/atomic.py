"""Atomic file writes (temp file in the same folder + rename): a crash never leaves half a file.

What the atomic write knows about its target: a character device, a FIFO or a socket (``/dev/null``,
``/dev/full``, a named pipe) and anything reached through ``/dev`` or ``/proc`` (``/dev/stdout``, a
link to ``/proc/self/fd/1``) is written into directly, never replaced by a regular file; a symlink to
a regular file gets its *target* replaced (the link stays): that is what a user who names a link as an
output means. A file dbnet owns (its ONNX cache) is written with ``follow_links=False``: whatever lies at
its name (a symlink, a dangling link, a FIFO) is replaced by the rename, never written through, so a
link planted there cannot make dbnet write into the file it points to. Temp and sibling names are kept within
the 255-byte limit of a file name (``fit_name``), and JSON is written as valid UTF-8 even for file
names that are not (``json_text``).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path

from dbcli.errors import DBNetError

NAME_MAX = 255  # bytes in one file name (Linux, macOS)
_RANDOM = 8  # characters tempfile.mkstemp adds to the prefix
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes in the file-system encoding, never within a character."""
    while len(os.fsencode(text)) > limit:
        text = text[:-max(1, (len(os.fsencode(text)) - limit) // 4)]
    return text


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` when it fits ``limit`` bytes, else its stem cut short and ``~<8 hex digits of the whole
    name's hash>`` added before its suffix (``<cut stem>~1a2b3c4d.png``): distinct names stay distinct."""
    if len(os.fsencode(name)) <= limit:
        return name
    suffix = Path(name).suffix if len(os.fsencode(Path(name).suffix)) <= 16 else ""
    tail = f"~{hashlib.sha1(os.fsencode(name)).hexdigest()[:8]}{suffix}"
    return _cut(name[: len(name) - len(suffix)], limit - len(os.fsencode(tail))) + tail


def sibling(path: str | os.PathLike, suffix: str) -> Path:
    """``<path><suffix>`` beside ``path`` (``out.jsonl.partial``, ``out.json.lock``), its name fitted to
    the file-name limit (``fit_name``)."""
    path = Path(path)
    return path.with_name(fit_name(path.name + suffix))


def temp_prefix(name: str) -> str:
    """The prefix of the temp file an atomic write of ``name`` uses: ``.<name>.``, the name cut so that
    ``.<name>.XXXXXXXX.tmp`` stays within ``NAME_MAX`` bytes."""
    return f".{_cut(name, NAME_MAX - 2 - _RANDOM - len('.tmp'))}."


def json_text(obj, indent: int | None = None) -> str:
    r"""``obj`` as JSON text that always encodes to valid UTF-8: non-ASCII as itself, but a lone
    surrogate (the undecodable byte 0xE9 of a Linux file name ``caf\xe9.jpg`` is ``\udce9`` in Python)
    as the escape ``\udce9``. Lossless: ``json.loads`` gives the same string back, and ``os.fsencode``
    of it the original bytes."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def writes_in_place(path: str | os.PathLike) -> bool:
    """Whether ``path`` must be written into rather than replaced: it exists and is not a regular file
    (a character device such as ``/dev/null``, a FIFO, a socket), or it lies in ``/dev`` or ``/proc``
    (``/dev/stdout``, a symlink to ``/proc/self/fd/1``), itself or behind its symlinks."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        return True
    places = (os.path.abspath(path), os.path.realpath(path))
    return any(p.startswith(("/dev/", "/proc/")) for p in places)


def replaced_path(path: str | os.PathLike) -> Path:
    """The file an atomic write of ``path`` replaces: ``path`` itself, or for a symlink the file it
    points to (made when missing), so that the link stays a link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_in_place(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` into ``path`` as it is (``writes_in_place`` targets: no temp file, no rename)."""
    with open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True, *,
                       follow_links: bool = True, mode: int | None = None) -> Path:
    """Write ``data`` to a temp file beside ``path`` and rename it into place: a crash never leaves
    half a file. ``durable``: also flush it to the disk before the rename (``fsync``), so that not even
    a power cut can leave an empty file; many small, re-creatable files (crops) skip that. A device,
    FIFO or ``/proc`` target is written into directly and a symlink's target is replaced (module doc);
    with ``follow_links=False`` neither: the rename replaces whatever is at ``path`` itself (a link, a
    FIFO), and the folder must exist. ``mode``: the file's permissions (default ``0o666`` less the
    umask). Returns ``path``."""
    if follow_links and writes_in_place(path):
        return write_in_place(path, data)
    given, path = Path(path), (replaced_path(path) if follow_links else Path(path))
    if follow_links:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp makes 0600; give the usual permissions
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return given


def check_writable(path: str | os.PathLike) -> Path:
    """Make ``path``'s folder and probe it with a temp file (removed again), so that a long job
    learns before its work, not after, that its output cannot be written. Raises ``OSError``."""
    given, path = Path(path), replaced_path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    if writes_in_place(given):  # (no probe file in /dev; opening a FIFO would wait for a reader)
        if not os.access(given, os.W_OK):
            raise PermissionError(13, "Permission denied", str(given))
        return given
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(probe)
    return given


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON (``json_text``: valid UTF-8 whatever its file names hold)."""
    return atomic_write_text(path, json_text(obj, indent=1) + "\n")


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def remove_stale_temps(folder: str | os.PathLike, names: list[str]) -> list[Path]:
    """Delete the temp files that an interrupted ``atomic_write_bytes`` of ``folder / name`` left
    behind (``.<name>.XXXX.tmp``, for each of ``names``). Call it only where no other process is
    writing those files (e.g. the one process that owns a run folder). Returns the removed paths."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f"{glob.escape(temp_prefix(name))}*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of an output ``out`` (a file or a run folder): ``<out>.lock`` beside it."""
    return sibling(out, ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _read_lock(lock: Path) -> bytes:
    """The first bytes of the lock file ``lock``; empty when it is missing, unreadable or not a regular
    file (a symlink or a FIFO planted there is never followed nor waited on)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(lock, flags)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(256) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        except OSError:
            return b""


def read_lock_pid(lock: Path) -> int:
    """The process id in the lock file ``lock``; 0 when it is missing, unreadable, not a number, or
    not a regular file."""
    return _holder(lock)[0]


def _holder(lock: Path) -> tuple[int, str, str]:
    """``(pid, host, started)`` written in ``lock`` (0 / "" for what cannot be read; a lock of an
    older dbnet holds the pid alone). Read with ``_read_lock``: links and FIFOs are never followed."""
    fields = _read_lock(lock).decode("utf-8", errors="replace").split()
    try:
        return int(fields[0]) if fields else 0, fields[1] if len(fields) > 1 else "", " ".join(fields[2:4])
    except ValueError:
        return 0, "", ""


def _held_by_another(pid: int, host: str) -> bool:
    """Whether a lock's holder still runs: a live process of this host (not this one), or any process of
    another host (a shared folder: its life cannot be checked from here)."""
    if host and host != socket.gethostname():
        return pid != 0
    return bool(pid) and pid != os.getpid() and _pid_alive(pid)


def acquire_lock(out: str | os.PathLike) -> Path:
    """Create ``<out>.lock`` holding this process's id, host and start time, so that a second process
    writing the same ``out`` (a detect output, a training run folder) is refused instead of both
    reporting success and one result being lost. A lock left by a process of this host that no longer
    runs (killed) is taken over. Raises ``DBNetError`` naming ``out`` and the live run when another
    process holds it, ``OSError`` when the folder cannot be written. Release with ``release_lock``."""
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host, started = _holder(lock)
            if _held_by_another(pid, host):
                where = f" on {host}" if host else ""
                since = f", started {started}" if started else ""
                raise DBNetError(f"{out}: another dbnet run (pid {pid}{where}{since}) is writing it; wait for "
                                 f"it, or delete {lock} if that process is not dbnet") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        return lock
    raise DBNetError(f"{out}: could not take the lock {lock}")


def release_lock(lock: Path | None) -> None:
    """Remove a lock made by ``acquire_lock`` in this process (``None``: nothing to do)."""
    if lock is None:
        return
    pid, host, _ = _holder(lock)
    if pid == os.getpid() and host in ("", socket.gethostname()):
        try:
            lock.unlink(missing_ok=True)
        except OSError:
            pass
