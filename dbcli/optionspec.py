"""Command-line declarations of dataclass fields, without a CLI framework.

A field declared with ``option(...)`` carries its command-line face in ``field.metadata[KEY]`` (an
``OptionSpec``: flag names, help text, metavar, choices, lower bound, hidden / show_default); the
dataclass stays a plain dataclass (frozen or not) that the library, the service and the API use as
is. The CLI layer (``dbcli.commands.common.options_from``) turns every declared field into a typer
option; a field declared with plain ``dataclasses.field`` or a bare default is no option.

Imports nothing but the standard library: ``from dbcli import Detector`` and the service stay free of
the CLI framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any

__all__ = ["KEY", "OptionSpec", "option", "option_spec", "declared"]

KEY = "dbcli.option"  # the key of a field's metadata that holds its OptionSpec


@dataclass(frozen=True)
class OptionSpec:
    """How one field appears on the command line.

    Attributes:
        flags: the option's names, e.g. ``("--weights", "-w")`` or ``("--polygon/--box",)``. Empty:
            the CLI's default, ``--field-name`` (and ``--no-field-name`` for a boolean).
        help: the help text (empty: none).
        metavar: the value's placeholder in the help (None: the type's, e.g. ``INTEGER``).
        choices: the values allowed (empty: any value of the field's type); the CLI refuses others.
        min: the smallest number allowed (None: no bound); the CLI refuses smaller ones.
        show_default: show ``[default: ...]`` in the help.
        hidden: leave the option out of the help (it still works).
    """

    flags: tuple[str, ...] = ()
    help: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    min: float | None = None
    show_default: bool = True
    hidden: bool = False


def option(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING,
           flags: tuple[str, ...] = (), help: str = "", metavar: str | None = None,
           choices: tuple[str, ...] = (), min: float | None = None, show_default: bool = True,
           hidden: bool = False) -> Any:
    """A ``dataclasses.field`` with ``default`` (or ``default_factory``) that is also a command-line
    option: the keywords after it are ``OptionSpec``'s. Typed ``Any`` as ``dataclasses.field`` is, so
    that ``x: int = option(0, help=...)`` type-checks."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("option() takes a default or a default_factory, not both")
    bad = [flag for flag in flags if not flag.startswith("-")]
    if bad:
        raise ValueError(f"option flags start with '-': {bad}")
    spec = OptionSpec(flags=tuple(flags), help=help, metavar=metavar, choices=tuple(choices), min=min,
                      show_default=show_default, hidden=hidden)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={KEY: spec})


def option_spec(field: dataclasses.Field) -> OptionSpec | None:
    """The ``OptionSpec`` of a dataclass field declared with ``option``; None for any other field."""
    spec = field.metadata.get(KEY)
    return spec if isinstance(spec, OptionSpec) else None


def declared(cls: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    """The fields of the dataclass ``cls`` that are command-line options, in declaration order."""
    found = ((f, option_spec(f)) for f in dataclasses.fields(cls))
    return [(f, spec) for f, spec in found if spec is not None]
