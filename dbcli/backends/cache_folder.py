"""dbnet's private cache folder (where ``dbcli.backends.onnx_cache`` keeps its ONNX exports): where it is,
whether it may be used, and reading, writing and evicting its files without ever following a link.

Where: ``$DBNET_CACHE`` (``~`` expanded, made absolute), else ``$XDG_CACHE_HOME/dbnet`` when that
variable is an absolute path (the XDG spec: a relative value is ignored), else ``~/.cache/dbnet``. A
``~`` that cannot be expanded (no home folder) is refused, never created as a folder named ``~``.

May it be used: the folder is made with mode 0700 and used only when it belongs to this user and is
not writable by its group or others (else anyone could plant or swap exports in it), is not a symlink
of another user's, and does not lie in a folder anyone can write without the sticky bit. A folder that
cannot be made or reached (a name over 255 bytes or over PATH_MAX, a parent without search
permission, a file in the way) is ``CacheUnusable``: the caller keeps its export in memory and says so
once.

Its files are dbnet's own: read with ``O_NOFOLLOW | O_NONBLOCK`` and used only when they are regular
files of this user (a symlink, a FIFO or a device planted at a cache name is never read, never waited
on), written by an atomic rename that replaces whatever lies at the name (``atomic_write_bytes`` with
``follow_links=False``, mode 0600), and signed with the folder's secret key (``cache_key``: 32 random
bytes in ``cache.key``, mode 0600) so that an export can be checked to be one dbnet made here.

Eviction (``evict``, after each new export): per weights file only the export of the running dbnet
and torch versions is kept; of the others, any not used for ``MAX_AGE_DAYS`` days is removed and at
most ``MAX_EXPORTS`` are kept, the least recently used removed first (a cached file's modification
time is set at each use). Temp files of writes that crashed are removed after a day.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import time
from pathlib import Path

from dbcli.outputs.atomic import atomic_write_bytes

KEY_NAME = "cache.key"
MAX_EXPORTS = 16  # exports kept at most (the newest used first)
MAX_AGE_DAYS = 60  # an export not used for this long is removed
_TEMP_AGE_S = 86400.0  # a temp file older than this is a crashed write's


class CacheUnusable(Exception):
    """The cache folder cannot be used; the message says which folder and why, in one line."""


def shown(path: str | os.PathLike, limit: int = 120) -> str:
    """``path`` for a message: whole when it fits ``limit`` characters, else its start and end around
    ``...`` (a name over PATH_MAX would fill the screen)."""
    text = os.fspath(path)
    return text if len(text) <= limit else f"{text[: limit // 2 - 2]}...{text[-(limit // 2 - 1):]}"


def _expanded(value: str, variable: str) -> Path:
    path = os.path.expanduser(value)
    if path.startswith("~"):
        raise CacheUnusable(f"{variable}={shown(value)}: `~` cannot be expanded here (no home folder); "
                            "no folder named `~` is made")
    try:
        return Path(path).absolute()
    except OSError as exc:  # a relative path, and the working folder was removed
        raise CacheUnusable(f"{variable}={shown(value)}: {exc.strerror or exc}") from None


def cache_dir() -> Path:
    """The cache folder (module doc); it may not exist yet. Raises ``CacheUnusable`` when there is none
    (no ``$DBNET_CACHE`` or absolute ``$XDG_CACHE_HOME``, and no home folder)."""
    if os.environ.get("DBNET_CACHE"):
        return _expanded(os.environ["DBNET_CACHE"], "$DBNET_CACHE")
    xdg = os.path.expanduser(os.environ.get("XDG_CACHE_HOME", ""))
    if os.path.isabs(xdg):
        return Path(xdg) / "dbnet"
    return _expanded("~", "$HOME") / ".cache" / "dbnet"


def _owner_problem(st: os.stat_result) -> str | None:
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"writable by its group or others (mode {stat.S_IMODE(st.st_mode):03o}; chmod 700 it)"
    return None


def _place_problem(path: Path) -> str | None:
    """What lets someone else swap the folder ``path`` (which exists): it is a symlink of another
    user's, or the folder it lies in is writable by anyone without the sticky bit (``/tmp`` has it)."""
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and hasattr(os, "geteuid") and link.st_uid not in (0, os.geteuid()):
        return f"a symlink of another user's (uid {link.st_uid})"
    parent = os.stat(os.path.dirname(os.path.realpath(path)))
    if parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX:
        return "in a folder anyone can write (no sticky bit)"
    return None


def open_folder(path: Path) -> Path:
    """``path`` made (mode 0700) when missing and checked to be a private folder of this user's, in a
    place no one else can swap it. Raises ``CacheUnusable`` saying why not."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        problem = _owner_problem(st) or _place_problem(path)
    except (OSError, ValueError) as exc:
        raise CacheUnusable(f"{shown(path)}: cannot be used ({getattr(exc, 'strerror', None) or exc})") from None
    if problem:
        raise CacheUnusable(f"{shown(path)}: {problem}: not used (whoever can write it could plant exports)")
    return path


def open_file(folder: Path, name: str, touch: bool = False) -> int | None:
    """A read-only descriptor of ``folder / name`` when it is a regular file of this user's, else None
    (missing, unreadable, a symlink, a FIFO, a device: never followed, never waited on). ``touch``:
    mark it as used now (its modification time, which ``evict`` reads). Close it (``os.close``)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(folder / name, flags)
    except (OSError, ValueError):
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    if touch:
        try:
            os.utime(fd)
        except OSError:
            pass  # a read-only cache: still used as it is
    return fd


def read_file(folder: Path, name: str) -> bytes | None:
    """The bytes of ``folder / name`` when it is a regular file of this user's (``open_file``), else
    None."""
    fd = open_file(folder, name)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError:
            return None


def write_file(folder: Path, name: str, data: bytes) -> Path:
    """Write ``folder / name`` atomically (mode 0600), replacing whatever lies there, never writing
    through it. Raises ``OSError``."""
    return atomic_write_bytes(folder / name, data, follow_links=False, mode=0o600)


def remove(path: Path) -> bool:
    """Unlink ``path`` itself (a link, not what it points to; never a folder). Whether it was removed."""
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _make_key(folder: Path) -> None:
    """Publish a new key in ``folder`` without replacing one made meanwhile (``os.link`` of a complete
    temp file). Raises ``FileExistsError`` when another process made it first, ``OSError``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{KEY_NAME}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, folder / KEY_NAME)
    finally:
        remove(Path(tmp))


def read_key(folder: Path) -> bytes | None:
    """The folder's secret key (``cache.key``: 64 hex digits in a regular file of this user's), or
    None when there is none (or something else lies at that name)."""
    data = read_file(folder, KEY_NAME)
    return data.strip() if data is not None and len(data.strip()) == 64 else None


def cache_key(folder: Path) -> bytes:
    """The folder's secret key (``read_key``), made (mode 0600) when missing; whatever else lies at
    that name (a link, a FIFO, a damaged file) is removed first. Raises ``OSError`` when it cannot be
    made."""
    for _ in range(3):
        key = read_key(folder)
        if key is not None:
            return key
        if os.path.lexists(folder / KEY_NAME):
            remove(folder / KEY_NAME)
        try:
            _make_key(folder)
        except FileExistsError:
            continue  # another process made it: read that one
    raise OSError(f"{folder / KEY_NAME}: cannot make the cache key")


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and (name.startswith(".dbnet-")
                                                                or name.startswith(f".{KEY_NAME}."))


def _sweep(folder: Path, keep: str, same_source: str, suffix: str) -> list[tuple[float, str]]:
    """Remove crashed writes' temp files, anything but a regular file at an export's name and the
    other exports of ``keep``'s source; the remaining exports as ``(last use, name)``."""
    now, exports = time.time(), []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if _is_temp(name):
                if now - st.st_mtime > _TEMP_AGE_S:
                    remove(folder / name)
            elif name.startswith("dbnet-") and name.endswith(suffix) and name != keep:
                if not stat.S_ISREG(st.st_mode) or name.startswith(same_source):
                    remove(folder / name)
                else:
                    exports.append((st.st_mtime, name))
    return exports


def evict(folder: Path, keep: str, same_source: str, suffix: str = ".onnx") -> list[str]:
    """The eviction of the module doc, after ``keep`` (an export's name) was written: exports named
    ``dbnet-*<suffix>``; those starting with ``same_source`` are the same weights file's (other
    versions). Returns the names removed; errors are ignored (eviction is housekeeping)."""
    try:
        exports = sorted(_sweep(folder, keep, same_source, suffix), reverse=True)
    except OSError:
        return []
    limit = time.time() - MAX_AGE_DAYS * 86400
    removed = []
    for rank, (last_use, name) in enumerate(exports, start=1):
        if (rank >= MAX_EXPORTS or last_use < limit) and remove(folder / name):
            removed.append(name)
    return removed
