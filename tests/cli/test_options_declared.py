"""Options declared once, without typer: ``dbcli.optionspec`` keeps each option's flags and help in the
dataclass field's metadata, ``commands.common.options_from`` makes the typer options, and the library
(``Detector``, the service) never imports the CLI framework."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import typer
import typer.main
from generated_files import runner

from dbcli.cli import app
from dbcli.commands.common import options_from
from dbcli.engine.options import InferenceOptions
from dbcli.optionspec import KEY, OptionSpec, declared, option, option_spec
from dbcli.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# --- the library does not import the CLI framework ---------------------------------------------------

def test_detector_and_service_do_not_import_typer_or_click():
    pytest.importorskip("starlette")
    out = _run("import sys, dbcli\n"
               "dbcli.Detector\n"
               "after_api = sorted(m for m in ('typer', 'click') if m in sys.modules)\n"
               "import dbcli.serve.app, dbcli.serve.options, dbcli.training.config\n"
               "after_serve = sorted(m for m in ('typer', 'click') if m in sys.modules)\n"
               "print('api', after_api, 'serve', after_serve)\n")
    assert out.strip() == "api [] serve []"


def test_the_probe_sees_typer_when_it_is_imported():
    """The check above can fail: the CLI module does bring typer in."""
    assert _run("import sys, dbcli.cli\nprint('typer' in sys.modules)").strip() == "True"


def test_no_module_outside_the_cli_layer_imports_typer_or_click():
    offenders = []
    for path in sorted((ROOT / "dbcli").rglob("*.py")):
        relative = path.relative_to(ROOT / "dbcli").as_posix()
        if relative.startswith("commands/") or relative == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{relative}: {n}" for n in names if n.split(".")[0] in ("typer", "click")]
    assert offenders == []


def test_help_of_every_command_stays_torch_free():
    out = _run("import sys\n"
               "from dbcli.cli import app\n"
               "for args in ([], ['detect'], ['visualize'], ['eval'], ['train'], ['export'], ['convert'], "
               "['serve']):\n"
               "    try:\n"
               "        app([*args, '--help'])\n"
               "    except SystemExit as exc:\n"
               "        assert exc.code in (0, None), (args, exc.code)\n"
               "print('TORCH=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))\n")
    assert out.strip().splitlines()[-1] == "TORCH="


# --- the CLI carries every declared field's metadata -------------------------------------------------

def _params(command: str) -> dict:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: p for p in click_command.params}


def _flags(param) -> set[str]:
    return {n for n in (*param.opts, *param.secondary_opts) if n.startswith("-")}


def _expected_flags(cls: type, field: dataclasses.Field, spec: OptionSpec) -> set[str]:
    """The flags declared, else the CLI's default: ``--name``, and ``--no-name`` for a boolean."""
    if spec.flags:
        return {n for flag in spec.flags for n in flag.split("/")}
    hint = typing.get_type_hints(cls)[field.name]
    name = "--" + field.name.replace("_", "-")
    return {name, "--no-" + field.name.replace("_", "-")} if bool in (hint, *typing.get_args(hint)) else {name}


@pytest.mark.parametrize("command, cls, excluded", [
    ("detect", InferenceOptions, ()), ("visualize", InferenceOptions, ()),
    ("eval", InferenceOptions, ("exif", "sort")), ("serve", InferenceOptions, ("max_megapixels",)),
    ("train", TrainConfig, ()),
])
def test_every_declared_field_is_an_option_with_its_help(command, cls, excluded):
    params = _params(command)
    text = re.sub(r"\s+", "", runner.invoke(app, [command, "--help"], terminal_width=120).output)  # (wrapped text)
    chosen = [(f, spec) for f, spec in declared(cls) if f.name not in excluded]
    assert len(chosen) >= 13
    for field, spec in chosen:
        param = params[field.name]
        assert _flags(param) == _expected_flags(cls, field, spec), field.name
        # the help as declared (``dbnet train`` adds the fine-tuning recipe's value after it)
        assert (param.help or "").startswith(spec.help or "") and param.show_default == spec.show_default, field.name
        assert param.default == field.default, field.name  # the dataclass's default, stated once
        if spec.help:
            assert re.sub(r"\s+", "", spec.help) in text, f"{field.name}'s help not in {command} --help"
    for name in excluded:  # left out: the command has its own or none
        assert name not in params or params[name].help != option_spec(
            {f.name: f for f in dataclasses.fields(cls)}[name]).help


def test_fields_without_a_declaration_are_no_options():
    params = _params("train")
    for name in ("momentum", "weight_decay", "poly_power", "max_angle", "save_every", "log_every", "loss", "post"):
        assert option_spec({f.name: f for f in dataclasses.fields(TrainConfig)}[name]) is None
        assert name not in params


# Every option name each command had when the declarations moved out of typer (the help was compared
# byte for byte then); a name may be added, none may silently go.
FLAGS_BEFORE = {
    "detect": "--backend --batch-size --box --box-thresh --crops --device --dpi --dtype --exif --format "
              "--max-candidates --max-megapixels --max-side --no-exif --out --overwrite --polygon --precision "
              "--resume --short-side --sort --thresh --unclip-ratio --weights -b -f -o -w",
    "visualize": "--backend --batch-size --box --box-thresh --device --dpi --dtype --exif --maps --max-candidates "
                 "--max-megapixels --max-side --no-exif --numbers --out --polygon --precision --pred --short-side "
                 "--sort --thresh --unclip-ratio --weights -b -o -w",
    "eval": "--allow-test-sweep --backend --batch-size --box --box-thresh --data-root --dataset --device --dtype "
            "--holdout-from-train --json --limit --max-candidates --max-megapixels --max-side --no-allow-test-sweep "
            "--no-sweep --out --overwrite --polygon --precision --pred --seed --short-side --split --sweep "
            "--sweep-box-thresh --sweep-thresh --thresh --unclip-ratio --weights -b -o -w",
    "train": "--amp --arch --batch-size --box-thresh --cache-images --cache-mb --crop-size --data-root --dataset "
             "--dcn --device --epochs --head-warmup-steps --init-weights --lr --max-steps --no-amp "
             "--no-cache-images --no-dcn --no-overwrite --no-pick-thresholds --no-recipe --no-reset-thresh-branch "
             "--no-time-schedule --optimizer --out --overwrite --pick-thresholds --pretrained-backbone --recipe "
             "--reset-thresh-branch --resume --scale-max --scale-min --scale-reference --seed --thresh "
             "--time-limit --time-schedule --val-every --val-fraction --val-limit --val-short-side "
             "--warmup-steps --workers",
    "export": "--format --opset --out --overwrite --tolerance --weights -f -o -w",
    "convert": "--licence --origin --out --overwrite --tolerance -o",
    "serve": "--backend --batch-size --box --box-thresh --device --dpi --drain-timeout --dtype --exif --host "
             "--max-batch --max-candidates --max-megapixels --max-pages --max-queue --max-side --max-upload-mb "
             "--no-exif --polygon --port --precision --short-side --sort --thresh --unclip-ratio --weights "
             "--workers -b -w",
}


@pytest.mark.parametrize("command", sorted(FLAGS_BEFORE))
def test_every_option_name_of_before_is_still_there(command):
    text = runner.invoke(app, [command, "--help"], terminal_width=120).output
    now = {n for p in _params(command).values() for n in _flags(p)}
    missing = set(FLAGS_BEFORE[command].split()) - now
    assert missing == set()
    for name in FLAGS_BEFORE[command].split():
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} not in {command} --help"


# --- optionspec itself, on a dataclass made for the test ------------------------------------------------

@dataclass(frozen=True)
class Toy:
    name: str = option(flags=("--name", "-n"), help="Who.", metavar="<who>")
    size: int = option(3, min=1, help="How many.")
    mode: Optional[str] = option(None, choices=("fast", "exact"), show_default=False, help="How.")
    loud: bool = option(False, help="Shout.")
    secret: int = option(7, hidden=True, help="Not shown.")
    tags: tuple = option(default_factory=lambda: ("a",), flags=("--tags",), help="Kept as given.")
    plain: float = 0.5  # no declaration: no option


def _toy_app() -> typer.Typer:
    toy_app = typer.Typer(rich_markup_mode=None, add_completion=False)

    @toy_app.command()
    @options_from(Toy, exclude=("tags",), name="toy")
    def show(*, toy: Toy) -> None:
        typer.echo(repr(toy))

    return toy_app


def test_option_keeps_its_declaration_in_the_fields_metadata():
    fields = {f.name: f for f in dataclasses.fields(Toy)}
    assert fields["size"].default == 3 and fields["size"].metadata[KEY] == OptionSpec(help="How many.", min=1)
    assert fields["name"].default is dataclasses.MISSING  # no default: a required field and option
    assert fields["tags"].default_factory() == ("a",)  # type: ignore[misc]
    assert option_spec(fields["plain"]) is None
    assert [f.name for f, _ in declared(Toy)] == ["name", "size", "mode", "loud", "secret", "tags"]
    assert Toy("x") == Toy(name="x", size=3, mode=None, loud=False, secret=7, tags=("a",), plain=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Toy("x").size = 4  # type: ignore[misc]


def test_option_refuses_a_malformed_declaration():
    with pytest.raises(ValueError, match="not both"):
        option(1, default_factory=list)
    with pytest.raises(ValueError, match="start with '-'"):
        option(1, flags=("size",))


def test_the_cli_layer_applies_each_declaration():
    toy_app = _toy_app()
    help_text = runner.invoke(toy_app, ["--help"], terminal_width=120).output
    assert re.search(r"-n, --name <who>\s+Who\.", help_text) and "[required]" in help_text
    assert re.search(r"--size <int range>\s+How many\.\s+\[default: 3; x>=1\]", help_text)
    assert "--mode <fast|exact>" in help_text and "[default: None]" not in help_text
    assert "--loud / --no-loud" in help_text and "Not shown" not in help_text and "--plain" not in help_text
    assert "--tags" not in help_text  # excluded
    ok = runner.invoke(toy_app, ["-n", "ann", "--size", "2", "--mode", "exact", "--loud", "--secret", "9"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == repr(Toy("ann", 2, "exact", True, 9))
    assert runner.invoke(toy_app, ["-n", "ann"]).output.strip() == repr(Toy("ann"))
    for bad in (["--size", "0"], ["--mode", "slow"], []):
        result = runner.invoke(toy_app, ["-n", "ann", *bad] if bad else bad)
        assert result.exit_code == 2, (bad, result.output)
