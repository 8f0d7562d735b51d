"""MkDocs hook: the CLI reference, generated at build time from the ``dbnet`` commands themselves.

A page that holds the line ``<!-- dbnet-cli-reference -->`` gets it replaced by one section per
subcommand of ``typer.main.get_command(dbcli.cli.app)``: its help text, usage line and a table of
every argument and option (names and metavar; help with default, range and choices), the help
records that ``dbnet CMD --help`` prints, read from the objects Typer builds (Typer may carry its own
copy of click, so they are read by their methods, not their classes).
Nothing is written by hand, so an option added to a command appears here on the next build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- dbnet-cli-reference -->"


def on_config(config: Any) -> Any:
    """Make the checkout's ``dbcli`` importable when mkdocs runs from it (no install needed)."""
    root = str(Path(config["config_file_path"]).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker line with the generated reference (other pages pass through)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())


def cli_reference() -> str:
    """Markdown for every subcommand of ``dbnet``, in the order ``dbnet --help`` lists them."""
    import typer.main

    from dbcli.cli import app

    group: Any = typer.main.get_command(app)
    parent = group.context_class(group, info_name="dbnet")
    sections = [_command_section(name, group.commands[name], parent) for name in group.list_commands(parent)]
    return "\n\n".join(sections) + "\n"


def _command_section(name: str, command: Any, parent: Any) -> str:
    ctx = command.context_class(command, info_name=name, parent=parent)
    usage = " ".join(["dbnet", name, *command.collect_usage_pieces(ctx)])
    lines = [f"## `dbnet {name}`", "", _plain(command.help or command.short_help or ""), "",
             "```text", usage, "```", "",
             "| argument / option | description |", "| --- | --- |"]
    lines += [_param_row(param, ctx) for param in command.get_params(ctx)]
    return "\n".join(lines)


def _param_row(param: Any, ctx: Any) -> str:
    """The help record ``dbnet CMD --help`` prints for this parameter (names with metavar; help with
    default, range and choices), as one table row."""
    record = param.get_help_record(ctx) if not getattr(param, "hidden", False) else None
    if record is None:  # a parameter --help does not list (click's plain arguments)
        record = (param.make_metavar(ctx) if hasattr(param, "make_metavar") else param.name.upper(), "")
    names, description = record
    if param.required and "required" not in description:
        description = f"{description} [required]".strip()
    return f"| `{names}` | {_cell(description)} |"


def _plain(text: str) -> str:
    """Click help text as Markdown: ``\\b`` (no-rewrap) markers dropped."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def _cell(text: str) -> str:
    """One table cell: no line breaks, pipes escaped."""
    return " ".join(_plain(text).split()).replace("|", "\\|")
