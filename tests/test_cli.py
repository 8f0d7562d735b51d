"""What a newcomer types first: -h, the same short flags on every command, eval's --dtype."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from dbcli.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args", [["-h"], ["detect", "-h"], ["eval", "-h"], ["train", "-h"]])
def test_h_is_help(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("command", ["detect", "eval", "visualize", "export"])
def test_short_flags_are_the_same_on_every_command(command):
    text = re.sub(r"\x1b\[[0-9;]*m", "", runner.invoke(app, [command, "--help"], terminal_width=200).output)
    assert re.search(r"--weights\s+-w\b", text) and re.search(r"-o\b", text)


def test_eval_dtype_is_precision(tmp_path):
    # --pred scores a file without a model: --dtype (like --precision) is refused by its own name
    for flag in ("--dtype", "--precision"):
        result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path),
                                     "--pred", str(tmp_path / "p.json"), flag, "bf16"])
        assert result.exit_code == 1 and "--precision" in result.output
