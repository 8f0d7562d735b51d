"""What every ``dbnet`` command shares: options made from a dataclass's annotated fields
(``options_from``; ``InferenceOptions`` and ``TrainConfig`` declare theirs beside their types), the
INPUT argument, ``fail`` (the one-line error), a status spinner and SIGTERM as Ctrl-C."""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from typing import Any

import typer

from dbcli import defaults


def fail(message: str) -> typing.NoReturn:
    """``error: message`` in red on stderr, exit status 1."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(1)


def _is_option(annotation: Any) -> bool:
    return any(isinstance(m, typer.models.ParameterInfo) for m in getattr(annotation, "__metadata__", ()))


def options_from(cls: type, *, exclude: tuple[str, ...] = (), name: str = "options") -> Callable:
    """A decorator: the command gets one CLI option per field of the dataclass ``cls`` that carries a
    typer annotation (less ``exclude``), and is called with them gathered as ``cls(...)`` in its
    keyword-only parameter ``name``. Fields left out keep their dataclass defaults."""
    hints = typing.get_type_hints(cls, include_extras=True)
    chosen = [f for f in fields(cls) if f.name not in exclude and _is_option(hints[f.name])]

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != name]
        added = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                   default=f.default if f.default is not MISSING else f.default_factory())  # type: ignore[misc,operator]
                 for f in chosen]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            gathered = cls(**{f.name: kwargs.pop(f.name) for f in chosen})
            return command(**kwargs, **{name: gathered})

        wrapper.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def inputs_arg() -> Any:
    return typer.Argument(..., metavar="INPUT", show_default=False,
                          help="Image and PDF files, folders (searched recursively for them) or glob patterns; "
                               "a PDF gives one result per page.")


def dpi_opt() -> Any:
    return typer.Option(defaults.DPI, "--dpi", min=1.0,
                        help="PDF inputs: render pages at this many pixels per inch (144: 10-12 pt text is "
                             "~20-24 px high); points are in these page pixels (x_pt = x * 72 / dpi). "
                             "Needs pip install 'dbnet[pdf]'.")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job) ends the command like Ctrl-C: the work done is kept and
    said, instead of the process vanishing mid-write. Main thread only; restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def status(message: str) -> Any:
    """A spinner on stderr while a silent step runs (on a terminal, or with DBNET_PROGRESS=1)."""
    from rich.console import Console

    from dbcli.progress import status as console_status

    return console_status(Console(stderr=True), message)
