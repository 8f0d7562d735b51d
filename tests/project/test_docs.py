"""The docs site: the CLI reference is generated from the commands themselves (every option of every
command appears, with its help text), and ``mkdocs build --strict`` renders it (when the docs extra
is installed: ``pip install -e ".[docs]"``, as CI does)."""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands() -> dict[str, list]:
    """{subcommand: its parameters}, as Typer builds them for ``dbnet``."""
    import typer.main

    from dbcli.cli import app

    group = typer.main.get_command(app)
    return {name: command.params for name, command in group.commands.items()}


def _sections(markdown: str) -> dict[str, str]:
    """The generated reference cut at its ``## `dbnet NAME` `` headings."""
    parts = re.split(r"^## `dbnet ([\w-]+)`$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_cli_reference_lists_every_option_of_every_command():
    sections = _sections(_hook().cli_reference())
    commands = _commands()
    assert set(sections) == set(commands) and {"detect", "train", "serve", "eval"} <= set(sections)
    for name, params in commands.items():
        for param in params:
            for opt in [*param.opts, *param.secondary_opts]:
                text = (param.metavar or opt.upper()) if param.param_type_name == "argument" else opt
                assert text in sections[name], f"dbnet {name}: {opt} missing from the CLI reference"
            if param.help:  # the help text, as --help prints it (whitespace folded)
                assert " ".join(param.help.split())[:40] in sections[name].replace("\\|", "|"), (name, param.name)


def test_the_marker_is_replaced_only_on_the_reference_page():
    hook = _hook()
    page = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    rendered = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert hook.MARKER not in rendered and "## `dbnet detect`" in rendered
    assert hook.on_page_markdown("# other page\n", page=None, config=None, files=None) == "# other page\n"


def test_mkdocs_build_strict_renders_the_generated_reference(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, env={**_env(), "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "reference" / "cli" / "index.html").read_text()))
    for name, params in _commands().items():
        assert f"dbnet {name}" in page
        for param in params:
            if param.param_type_name == "option":
                assert all(opt in page for opt in param.opts), (name, param.opts)
    api = (site / "reference" / "api" / "index.html").read_text()  # from the docstrings, submodules included
    assert "Detector" in api and "boxes_from_prob_map" in api and "DBNetError" in api


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_the_plots_read_their_figures_from_the_bench_results():
    """bench/plots.py draws the docs' plots from the tables of bench/README.md: the figures it reads
    are those tables' cells (a table renamed or reshaped fails here, not in a silent plot)."""
    from bench.plots import coverage_figures, markdown_tables, speed_figures

    tables = markdown_tables((ROOT / "bench" / "README.md").read_text(encoding="utf-8"))
    speed = speed_figures(tables)
    assert set(speed) == {"idle", "one competing process"}
    for values in speed.values():
        assert "PP-OCRv4 det" in values and all(v > 0 for v in values.values())
    assert speed["idle"]["dbcli general, default"] == 7.25  # the bold cell of the idle table
    coverage = coverage_figures(tables)
    assert len(coverage) == 3 and all(values["policy"] == 100.0 for values in coverage.values())
    assert all(0 <= v <= 100 for values in coverage.values() for v in values.values())


def test_markdown_tables_keep_escaped_pipes_and_stop_at_the_table_end():
    from bench.plots import markdown_tables

    text = "intro\n\n| a | b |\n| --- | ---: |\n| x \\| y | **1.5** |\n| z | 2 |\nafter\n| not | a table |\n"
    assert markdown_tables(text) == [[{"a": "x \\| y", "b": "**1.5**"}, {"a": "z", "b": "2"}]]
