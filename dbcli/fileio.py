"""Atomic file writes (temp file in the same folder + rename): a crash never leaves half a file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from dbcli.errors import DBNetError


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to a temp file beside ``path`` and rename it into place: a crash never leaves
    half a file. ``durable``: also flush it to the disk before the rename (``fsync``), so that not even
    a power cut can leave an empty file; many small, re-creatable files (crops) skip that."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Make ``path``'s folder and probe it with a temp file (removed again), so that a long job
    learns before its work, not after, that its output cannot be written. Raises ``OSError``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(probe)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


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
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of an output ``out`` (a file or folder): ``<out>.lock`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def acquire_lock(out: str | os.PathLike) -> Path:
    """Create ``<out>.lock`` holding this process's id, so that a second process writing the same
    ``out`` is refused instead of both reporting success and one result being lost. A lock left by
    a process that no longer runs (killed) is taken over. Raises ``DBNetError`` when another running
    process holds it, ``OSError`` when the folder cannot be written. Release with ``release_lock``."""
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise DBNetError(f"{out}: another dbnet process (pid {pid}) is writing it; wait for it, "
                                 f"or delete {lock} if that process is not dbnet") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return lock
    raise DBNetError(f"{out}: could not take the lock {lock}")


def release_lock(lock: Path | None) -> None:
    """Remove a lock made by ``acquire_lock`` in this process (``None``: nothing to do)."""
    if lock is None:
        return
    try:
        if int(lock.read_text().strip() or 0) == os.getpid():
            lock.unlink()
    except (OSError, ValueError):
        pass
