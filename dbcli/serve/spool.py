"""Where uploads live while they are read and run, and how many bytes they may hold together.

Each server process keeps its uploads under ``<temp>/dbnet-serve/<pid>-<token>/`` (``token``: 8 hex
digits), one folder per request inside it. The process removes its own folder when it stops; a
process killed outright (SIGKILL, out of memory) cannot, so a new one removes, at start-up, every
folder of that name pattern whose process is gone (never another live server's, nor anything not
named as dbnet names it).

``Spool.reserve`` / ``release`` count the bytes of every upload from its first byte (its declared
``Content-Length``, or what has arrived) until its request is over: uploads in progress and
admitted ones together stay under ``max_bytes`` on disk and in memory, whatever the connections do.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

ROOT_NAME = "dbnet-serve"
FOLDER_PATTERN = re.compile(r"^(\d+)-[0-9a-f]{8}$")


def _alive(pid: int) -> bool:
    """Is there a process ``pid`` (one of another user's counts as alive)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(root: Path) -> list[Path]:
    """Remove the folders under ``root`` named ``<pid>-<token>`` whose process is gone; returns them."""
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = FOLDER_PATTERN.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class Spool:
    """This process's upload folder (created on construction, after the stale ones of killed runs are
    removed) and the byte budget of its uploads. ``base``: the parent (None: the system's temp
    folder); ``max_bytes``: the most all uploads may hold at once."""

    def __init__(self, max_bytes: int, base: str | Path | None = None):
        self.root = Path(base or tempfile.gettempdir()) / ROOT_NAME
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.stale_removed = remove_stale(self.root)
        self.folder = self.root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.folder.mkdir(mode=0o700)
        self.max_bytes = max_bytes
        self._held = 0
        self._lock = threading.Lock()

    def new_folder(self) -> Path:
        """An empty folder for one request's files."""
        return Path(tempfile.mkdtemp(dir=self.folder))

    def reserve(self, n: int) -> bool:
        """Count ``n`` more bytes against the budget; False (nothing counted) when they do not fit."""
        with self._lock:
            if self._held + n > self.max_bytes:
                return False
            self._held += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._held = max(0, self._held - n)

    @property
    def held(self) -> int:
        """Bytes counted now."""
        with self._lock:
            return self._held

    def remove(self) -> None:
        """Remove this process's folder and everything in it (the server stops)."""
        shutil.rmtree(self.folder, ignore_errors=True)
