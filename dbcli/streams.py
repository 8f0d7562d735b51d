"""The command line's standard streams when the caller closed them (``dbnet ... 2>&-``, ``>&-``).

A closed descriptor 0, 1 or 2 is the first one the next ``open`` gets: the output file or the lock
would become "stderr", and a library's C-level warning would land inside the JSON. So the command
line puts ``/dev/null`` on each closed one before any work (``guard_standard_streams``). With
stderr closed the command then runs as usual (no bar, no warnings shown); with stdout closed what
would have been printed there (the summary, a table, a document sent to ``-``) is counted, and a
command that lost any of it ends with a non-zero status (``exit_status``). Process-wide: for the
``dbnet`` entry point only, never done by the library.
"""

from __future__ import annotations

import io
import os
import sys

LOST_STATUS = 1  # the exit status of a command whose stdout output was lost


class LostOutput(io.RawIOBase):
    """A binary stream that counts and drops what is written (stdout was closed by the caller)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        size = len(memoryview(data).cast("B"))
        self.lost += size
        return size


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def guard_standard_streams() -> LostOutput | None:
    """Put ``/dev/null`` on each of descriptors 0-2 that is closed; ``sys.stderr`` None (closed)
    becomes a stream into ``/dev/null``, ``sys.stdout`` None one that counts what is lost. Returns that
    counter when stdout was closed, else None."""
    closed = [fd for fd in (0, 1, 2) if not _is_open(fd)]
    for fd in closed:
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:  # (the lowest free descriptor: fd itself, since the lower ones are open now)
            os.dup2(null, fd)
            os.close(null)
    if sys.stderr is None or 2 in closed:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    if sys.stdout is None or 1 in closed:
        lost = LostOutput()
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(lost), encoding="utf-8", write_through=True)
        return lost
    return None


def exit_status(code: object, lost: LostOutput | None) -> object:
    """The status a command ends with: ``code`` (``SystemExit``'s), or ``LOST_STATUS`` when it would
    have succeeded but wrote to a closed stdout (said on stderr, when that is open)."""
    if lost is None:
        return code
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if lost.lost and code in (0, None):
        print(f"error: stdout is closed: {lost.lost} bytes of output (the command's summary or "
              "results) were lost", file=sys.stderr)
        return LOST_STATUS
    return code
