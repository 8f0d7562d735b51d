"""How a training run ends when it is told to: SIGTERM (a scheduler's stop, ``kill``) ends it at the
end of the step under way, with ``latest.pt`` written as at a ``--time-limit`` stop
(``stop_on_sigterm``); Ctrl-C (or a second SIGTERM) stops at once, keeping the last checkpoint. Either
way the last line says what is kept and how to resume (``TrainingInterrupted``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbcli.errors import DBNetError
from dbcli.training.state import RunState, Stop


class TrainingInterrupted(DBNetError):
    """A run stopped by a signal; ``exit_code`` is the shell's for it (130 Ctrl-C, 143 SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def stop_on_sigterm(state: RunState, enabled: bool = True) -> Iterator[None]:
    """While the block runs, the first SIGTERM sets ``state.stop`` (the loop stops after its step,
    writing ``latest.pt``); a second one interrupts at once (``KeyboardInterrupt``). Off where it must
    be: outside the main thread, or ``enabled`` False (several processes under torchrun must stop at
    the same step; there SIGTERM keeps its default)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if state.stop is Stop.SIGNAL:
            raise KeyboardInterrupt
        state.stop, state.stop_message = Stop.SIGNAL, f"SIGTERM received: stopped at the end of step {state.step + 1}"

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_hint(out: Path, state: RunState) -> str:
    """What a stopped run keeps and the command that continues it."""
    latest = out / "latest.pt"
    if not latest.is_file():
        return f"no checkpoint was written yet in {out}: start the run again"
    return f"{latest} holds the run as of its last checkpoint; continue with: dbnet train --resume {out}"


def stopped_by_signal(out: Path, state: RunState) -> TrainingInterrupted:
    """The error a run stopped by SIGTERM ends with (after its checkpoint and weights are written)."""
    return TrainingInterrupted(f"training stopped by SIGTERM at step {state.step}; {resume_hint(out, state)}", 143)


def interrupted(out: Path, state: RunState) -> TrainingInterrupted:
    """The error a run interrupted at once (Ctrl-C, a second SIGTERM) ends with."""
    return TrainingInterrupted(f"training interrupted at step {state.step}; {resume_hint(out, state)}", 130)
