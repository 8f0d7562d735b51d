"""MkDocs hook: the CLI reference, generated at build time from the ``dbnet`` commands themselves.

A page that holds the line ``<!-- dbnet-cli-reference -->`` gets it replaced by one section per
subcommand of ``typer.main.get_command(dbcli.cli.app)``: its help text, usage line and a table of
every argument and option (names, type, default, help), read from the click objects Typer builds.
Nothing is written by hand, so an option added to a command appears here on the next build.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

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

    group = typer.main.get_command(app)
    parent = click.Context(group, info_name="dbnet")
    assert isinstance(group, click.Group)
    sections = [_command_section(name, group.commands[name], parent) for name in group.list_commands(parent)]
    return "\n\n".join(sections) + "\n"


def _command_section(name: str, command: click.Command, parent: click.Context) -> str:
    ctx = click.Context(command, info_name=name, parent=parent)
    usage = " ".join(["dbnet", name, *command.collect_usage_pieces(ctx)])
    lines = [f"## `dbnet {name}`", "", _plain(command.help or command.short_help or ""), "",
             "```text", usage, "```", "",
             "| argument / option | type | default | description |", "| --- | --- | --- | --- |"]
    lines += [_param_row(param, ctx) for param in command.get_params(ctx)]
    return "\n".join(lines)


def _param_row(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option):
        names = " / ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        description = param.help or ""
    else:
        names = f"`{(param.human_readable_name or param.name or '').upper()}`"
        description = getattr(param, "help", None) or ""
    if param.required:
        default = "required"
    elif isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        default = "off" if not param.default else "on"
    else:
        default = _default_text(param.get_default(ctx, call=False))
    return f"| {names} | {_type_name(param)} | {default} | {_cell(description)} |"


def _type_name(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return " \\| ".join(f"`{choice}`" for choice in param.type.choices)
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    name = param.type.name.lower()
    return f"{name} (repeatable)" if param.multiple or param.nargs == -1 else name


def _default_text(value: Any) -> str:
    if value is None or value == () or value == []:
        return ""
    if hasattr(value, "value"):  # an Enum member
        value = value.value
    return f"`{value}`"


def _plain(text: str) -> str:
    """Click help text as Markdown: ``\\b`` (no-rewrap) markers dropped."""
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def _cell(text: str) -> str:
    """One table cell: no line breaks, pipes escaped."""
    return " ".join(_plain(text).split()).replace("|", "\\|")
