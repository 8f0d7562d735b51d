"""What a newcomer types first: -h, the same short flags on every command, eval's --dtype."""

from __future__ import annotations

import re

import pytest
from generated_files import runner

from dbcli.cli import app


@pytest.mark.parametrize("args", [["-h"], ["detect", "-h"], ["eval", "-h"], ["train", "-h"]])
def test_h_is_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("command", ["detect", "eval", "visualize", "export"])
def test_short_flags_are_the_same_on_every_command(command):
    text = re.sub(r"\x1b\[[0-9;]*m", "", runner.invoke(app, [command, "--help"], terminal_width=200).output)
    assert re.search(r"(-w, --weights|--weights, -w)\b", text) and re.search(r"-o\b", text)


def _help(args: list[str], width: int) -> str:
    result = runner.invoke(app, [*args, "--help"], terminal_width=width, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return re.sub(r"\x1b\[[0-9;]*m", "", result.output)


COMMANDS = ["train", "eval", "detect", "visualize", "export", "convert"]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_option_name_whole(command, width):
    """On an 80-column terminal every option name is readable in full (rich's table cut them to
    "--holdout-from-t..."), and no line runs past the terminal."""
    import typer.main

    text = _help([command], width)
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    names = [name for p in params for name in (*p.opts, *p.secondary_opts) if name.startswith("-")]
    assert len(names) >= 3
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} not whole in {command} --help"
    assert "\u2026" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_command_list_fits_80_columns():
    text = _help([], 80)
    for command in COMMANDS:
        assert re.search(rf"^  {command} +\S", text, re.M)
    assert "..." not in text.split("Commands:")[1]
    assert max(len(line) for line in text.splitlines()) <= 80


def test_eval_dtype_is_precision(tmp_path):
    # --pred scores a file without a model: --dtype (like --precision) is refused by its own name
    for flag in ("--dtype", "--precision"):
        result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path),
                                     "--pred", str(tmp_path / "p.json"), flag, "bf16"])
        assert result.exit_code == 1 and "--precision" in result.output
