"""Progress bars, warnings and status lines on stderr, shared by every command.

A bar is shown when stderr is a terminal, or when ``DBNET_PROGRESS=1`` asks for it anyway (logs of
batch jobs); ``DBNET_PROGRESS=0`` hides it on a terminal too.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator


def progress_enabled(console: Any) -> bool:
    """Whether bars are drawn on ``console`` (a rich ``Console``): see the module doc."""
    setting = os.environ.get("DBNET_PROGRESS")
    if console.quiet or setting == "0":
        return False
    stream = sys.stderr  # None when the process started with stderr closed (2>&-)
    return setting == "1" or (stream is not None and stream.isatty())


def progress_bar(console: Any, label: str, total: int, *, unit: str | None = "images",
                 transient: bool = False, info: bool = False) -> Any:
    """A rich ``Progress`` with one bar: ``label``, the bar, done/total, a rate in ``unit``/s (None:
    no rate), elapsed time, eta, and (``info``) a ``{task.fields[info]}`` text column. Disabled when
    ``total`` is 0 or ``progress_enabled`` says no."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")

    columns: list[Any] = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    if unit is not None:
        columns.append(Rate())
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=console, transient=transient,
                    disable=total == 0 or not progress_enabled(console))


def warn(console: Any, message: str) -> None:
    """One ``warning:`` line on ``console`` (the message is printed as it is: no rich markup)."""
    from rich.markup import escape

    console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True, highlight=False)


@contextmanager
def status(console: Any, message: str) -> Iterator[None]:
    """A spinner with ``message`` on ``console`` while the block runs (loading a model takes seconds);
    nothing when the console is not a terminal and ``DBNET_PROGRESS`` is not 1."""
    if not progress_enabled(console):
        yield
        return
    with console.status(message):
        yield


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``; ``plural_form`` for irregular nouns."""
    return f"{count} {noun if count == 1 else (plural_form or noun + 's')}"
