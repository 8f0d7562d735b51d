"""What every ``dbnet`` command shares: typer options made from a dataclass's declared fields
(``options_from``; ``InferenceOptions`` and ``TrainConfig`` declare theirs, typer-free, with
``dbcli.optionspec.option``), the INPUT argument, ``fail`` (the one-line error), a status spinner and
SIGTERM as Ctrl-C."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field
from typing import Any, Literal, Optional

import typer

from dbcli import defaults
from dbcli.optionspec import OptionSpec, declared


def terminal_lines(text: str, stream: Any, width: int | None = None) -> str:
    """``text`` wrapped at word boundaries to the terminal's width when ``stream`` is a terminal (else
    as it is: one line for a log or a pipe), continuation lines indented by two spaces. A word longer
    than the width (a long path) stays whole on its own line. ``width``: the terminal's columns
    (default: asked from the system)."""
    import shutil
    import textwrap

    if stream is None or not getattr(stream, "isatty", lambda: False)():
        return text
    columns = width or shutil.get_terminal_size().columns
    return textwrap.fill(text, width=max(20, columns - 1), subsequent_indent="  ", break_long_words=False,
                         break_on_hyphens=False)


def say(text: str, err: bool = False) -> None:
    """A closing line (what was written, how fast) on stdout or stderr, wrapped between words on a
    terminal (``terminal_lines``) instead of mid-word by the terminal itself."""
    import sys

    try:
        typer.echo(terminal_lines(text, sys.stderr if err else sys.stdout), err=err)
    except OSError as exc:  # stdout on a full disk or /dev/full: the line goes to stderr with the error
        if err:
            raise typer.Exit(1) from None
        fail(f"stdout: cannot write ({exc.strerror or exc}): {text}")


def say_error(message: str) -> None:
    """``error: message`` on stderr: in red on a terminal, plain when ``$NO_COLOR`` is set to anything
    but the empty string (https://no-color.org) or stderr is not a terminal."""
    if os.environ.get("NO_COLOR"):
        typer.echo(f"error: {message}", err=True)
    else:
        typer.secho(f"error: {message}", fg="red", err=True)


def fail(message: str) -> typing.NoReturn:
    """``say_error(message)``, exit status 1."""
    say_error(message)
    raise typer.Exit(1)


def needs_torch(what: str) -> Callable:
    """A decorator for a command that needs PyTorch (the ``train`` extra): without torch it fails in one
    line saying what to install (``dbcli.extras.require_torch``), before its options are even gathered."""
    from dbcli.errors import DBNetError
    from dbcli.extras import require_torch

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                require_torch(what)
            except DBNetError as exc:
                fail(str(exc))
            return command(*args, **kwargs)

        return wrapper

    return decorate


def _typer_option(field: Field, spec: OptionSpec, note: str = "") -> Any:
    """The ``typer.Option`` of a field declared with ``dbcli.optionspec.option`` (a field without a
    default is a required option); ``note`` is added to its help."""
    default: Any = field.default
    if default is MISSING:
        factory: Any = field.default_factory
        default = ... if factory is MISSING else factory()
    text = " ".join(part for part in (spec.help, note) if part)
    return typer.Option(default, *spec.flags, help=text or None, metavar=spec.metavar, min=spec.min,
                        show_default=spec.show_default, hidden=spec.hidden)


def _cli_type(annotation: Any, spec: OptionSpec) -> Any:
    """The parameter's type: the field's, or a ``Literal`` of its choices (which typer enforces)."""
    if not spec.choices:
        return annotation
    choice = Literal[spec.choices]  # type: ignore[name-defined,valid-type]  # (typing spreads the tuple)
    return Optional[choice] if type(None) in typing.get_args(annotation) else choice


def options_from(cls: type, *, exclude: tuple[str, ...] = (), name: str = "options",
                 notes: dict[str, str] | None = None) -> Callable:
    """A decorator: the command gets one CLI option per field of the dataclass ``cls`` declared with
    ``dbcli.optionspec.option`` (less ``exclude``), and is called with them gathered as ``cls(...)`` in
    its keyword-only parameter ``name``. Fields left out keep their dataclass defaults. ``notes``: a
    line added to the help of some fields (by name), e.g. another set of defaults."""
    hints = typing.get_type_hints(cls)
    chosen = [(f, spec) for f, spec in declared(cls) if f.name not in exclude]

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != name]
        added = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=_cli_type(hints[f.name], spec),
                                   default=_typer_option(f, spec, (notes or {}).get(f.name, "")))
                 for f, spec in chosen]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            gathered = cls(**{f.name: kwargs.pop(f.name) for f, _ in chosen})
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
                             "Needs pip install 'dbnet-cli[pdf]'.")


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
