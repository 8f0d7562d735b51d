"""Bad data, predictions, weights and output paths are one line naming the file (and line),
never a traceback; export checks its output before the slow work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from generated_files import invoke, runner, write_rgb

from dbcli.cli import app
from dbcli.data.datasets import load_samples
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import evaluate_predictions

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



# --- 4. one-line errors naming the file -----------------------------------------------------------
def test_nan_ground_truth_is_one_error_naming_file_and_line(tmp_path):
    root = tmp_path / "icdar"
    (root / "test_images").mkdir(parents=True)
    (root / "test_gts").mkdir()
    write_rgb(root / "test_images" / "img_1.png")
    gt = root / "test_gts" / "gt_img_1.txt"
    gt.write_text("1,1,50,1,50,20,1,20,ok\nnan,1,50,1,50,20,1,20,word\n")
    with pytest.raises(DBNetError, match=r"gt_img_1\.txt:2: non-finite coordinate"):
        load_samples("icdar15", root, "test")
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps({"images": [{"file": "img_1.png", "detections": []}]}))
    result = invoke("eval", "--dataset", "icdar15", "--data-root", root, "--pred", pred)
    assert result.exit_code == 1 and "gt_img_1.txt:2" in result.output and "Traceback" not in result.output
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "test.jsonl").write_text(json.dumps({"image": "a.png", "polygons": [
        [[0, 0], [float("nan"), 0], [5, 5]]]}) + "\n")
    with pytest.raises(DBNetError, match=r"test\.jsonl:1: .*non-finite"):
        load_samples("custom", custom, "test")


@pytest.mark.parametrize("detection, complaint", [
    ({"points": [[0, 0], [9, 0], [9, 9]], "score": float("nan")}, "score"),
    ({"points": [[0, 0], [9, 0], [9, 9]], "score": True}, "score"),
    ({"points": [["0", "0"], ["9", "0"], ["9", "9"]], "score": 0.9}, "points"),
    ({"points": [[0, 0], [9, True], [9, 9]], "score": 0.9}, "points"),
])
def test_eval_pred_rejects_nan_boolean_and_string_values(tmp_path, detection, complaint):
    root = tmp_path / "data"
    root.mkdir()
    write_rgb(root / "img0.png")
    (root / "test.jsonl").write_text(json.dumps({"image": "img0.png", "polygons": []}) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"images": [{"file": "img0.png", "detections": [detection]}]}))
    with pytest.raises(DBNetError, match=rf"pred\.json: images\[0\]\.detections\[0\] \(img0\.png\): "
                                         rf"\"{complaint}\""):
        evaluate_predictions(load_samples("custom", root, "test"), pred)
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--pred", pred)
    assert result.exit_code == 1 and "pred.json" in result.output and "Traceback" not in result.output


def _bad_weights(source: Path, tmp_path: Path, name: str, change) -> Path:
    from dbcli.weights import load_weights

    data = dict(load_weights(source))
    data.pop("path")
    data["model"] = dict(data["model"])
    data["postprocess"] = dict(data.get("postprocess") or {})
    change(data)
    path = tmp_path / name
    torch.save(data, path)
    return path


@pytest.mark.parametrize("name, change, message", [
    ("arch.pt", lambda d: d["model"].update(arch="vgg99"), "unknown architecture 'vgg99'"),
    ("newer.pt", lambda d: d["model"].update(width=2), "unknown model setting(s) width"),
    ("thresh.pt", lambda d: d["postprocess"].update(thresh="high"), "postprocess thresh must be a number"),
    ("version.pt", lambda d: d.update(version=7), "format version 7"),
])
def test_bad_weights_files_are_one_error_naming_the_file(model_files, tmp_path, name, change, message):
    from dbcli.weights import load_weights

    path = _bad_weights(model_files["pt"], tmp_path, name, change)
    with pytest.raises(DBNetError) as info:
        load_weights(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    image = write_rgb(tmp_path / "a.png")
    result = invoke("detect", image, "--weights", path)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and name in result.stderr
    assert "Traceback" not in result.output


def test_known_architectures_come_from_the_models_package():
    from dbcli.models import ARCHS
    from dbcli.weights import weights_problem

    entry = {"format": "dbnet-weights", "version": 1, "state_dict": {}}
    assert "mobilenet_v3" in ARCHS
    for arch in ARCHS:
        assert weights_problem({**entry, "model": {"arch": arch}}) is None, arch
    assert "unknown architecture 'newnet'" in weights_problem({**entry, "model": {"arch": "newnet"}})


def test_export_checks_out_before_exporting(model_files, tmp_path, monkeypatch):
    import dbcli.backends.export as export_module

    def too_early(*args, **kwargs):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(export_module, "_export_onnx", too_early)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = invoke("export", "--weights", model_files["pt"], "--out", blocker / "model.onnx")
    assert result.exit_code == 1 and "cannot write" in result.output and "model.onnx" in result.output


# --- 5. option values: finite and in range, checked before any work (issue 25, classes 4 and 6) -----
@pytest.mark.parametrize("option, value", [
    ("--unclip-ratio", "nan"), ("--unclip-ratio", "inf"), ("--thresh", "nan"), ("--box-thresh", "inf"),
    ("--box-thresh", "-inf"), ("--max-megapixels", "nan"), ("--max-megapixels", "inf"), ("--dpi", "inf"),
    ("--dpi", "nan"), ("--unclip-ratio", "-1"), ("--thresh", "1.5"), ("--unclip-ratio", "1e300"),
    ("--unclip-ratio", "11"),
])
def test_non_finite_or_out_of_range_options_are_one_error(model_files, tmp_path, option, value):
    image = write_rgb(tmp_path / "a.png")
    out = tmp_path / "o.json"
    result = invoke("detect", image, "--weights", model_files["onnx"], option, value, "--out", out)
    # our one-line error (exit 1), or Typer's usage error where the option declares a bound (exit 2)
    assert result.exit_code == 2 or (result.exit_code == 1 and result.stderr.count("\n") == 1), result.output
    assert option in result.stderr and "Traceback" not in result.output and not out.exists()


def test_the_api_refuses_non_finite_settings(model_files):
    from dbcli import Detector

    for name in ("thresh", "box_thresh", "unclip_ratio", "max_megapixels"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(DBNetError, match="--" + name.replace("_", "-")):
                Detector(model_files["onnx"], device="cpu", **{name: value})
    with pytest.raises(DBNetError, match="--dpi"):
        Detector(model_files["onnx"], device="cpu").pdf("any.pdf", dpi=float("inf"))


@pytest.mark.parametrize("entry, value", [("unclip_ratio", -1.0), ("thresh", 5.0), ("box_thresh", -0.5),
                                          ("max_candidates", 0)])
def test_bad_values_inside_a_weights_file_are_blamed_on_the_file(model_files, tmp_path, entry, value):
    path = _bad_weights(model_files["pt"], tmp_path, f"{entry}.pt", lambda d: d["postprocess"].update({entry: value}))
    image = write_rgb(tmp_path / "a.png")
    result = invoke("detect", image, "--weights", path, "--out", tmp_path / "o.json")
    # (the file is a good model: its one-time ONNX export is said first, "exporting ...", "exported ...")
    errors = [line for line in result.stderr.splitlines() if not line.startswith(("exporting ", "exported "))]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert f"{path}: its stored {entry}" in errors[0] and "Traceback" not in result.output
    flag = "--" + entry.replace("_", "-")
    fixed = {"unclip_ratio": "1.5", "thresh": "0.3", "box_thresh": "0.5", "max_candidates": "100"}[entry]
    result = invoke("detect", image, "--weights", path, flag, fixed, "--out", tmp_path / "o.json")
    assert result.exit_code == 0, result.output  # the option the message names overrides the file's value


@pytest.mark.parametrize("name, value, complaint", [
    ("list.pt", [1.0, 2.0], "is a list, not a tensor"),
    ("text.pt", "weights", "is a str, not a tensor"),
    ("none.pt", None, "is a NoneType, not a tensor"),
])
def test_a_state_dict_of_non_tensors_is_one_error_naming_the_file(model_files, tmp_path, name, value, complaint):
    def change(data):
        data["state_dict"] = dict(data["state_dict"])
        key = next(iter(data["state_dict"]))
        data["state_dict"][key] = value

    path = _bad_weights(model_files["pt"], tmp_path, name, change)
    result = invoke("detect", write_rgb(tmp_path / "a.png"), "--weights", path, "--backend", "torch")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert str(path) in result.stderr and complaint in result.stderr and "Traceback" not in result.output


def test_a_file_named_like_shipped_weights_does_not_shadow_them(model_files, tmp_path, monkeypatch):
    from dbcli.weights import resolve_weights, weights_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "general").write_text("my notes about the general model")
    (tmp_path / "icdar15").mkdir()
    assert resolve_weights("general").parent == weights_dir()
    assert resolve_weights("icdar15").parent == weights_dir()
    image = write_rgb(tmp_path / "a.png")
    result = invoke("detect", image, "--weights", "general", "--out", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    assert Path(json.loads((tmp_path / "o.json").read_text())["model"]["weights"]).parent == weights_dir()
    result = invoke("detect", image, "--weights", "./general", "--backend", "torch")  # a path: the local file
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "general: not a loadable weights file (" in result.stderr and "Traceback" not in result.output


# --- 6. ONNX files that are not what dbnet exports --------------------------------------------------
def _edited_onnx(source: Path, target: Path, edit) -> Path:
    import onnx

    model = onnx.load(str(source))
    edit(model, onnx.helper)
    onnx.save(model, str(target))
    return target


def _extra_output_first(model, helper) -> None:
    model.graph.node.append(helper.make_node("Identity", ["images"], ["extra"]))
    model.graph.output.insert(0, helper.make_tensor_value_info("extra", 1, ["batch", 3, "height", "width"]))


def _two_maps_no_prob(model, helper) -> None:
    model.graph.node.append(helper.make_node("Identity", ["prob"], ["map_a"]))
    model.graph.node.append(helper.make_node("Identity", ["prob"], ["map_b"]))
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(n, 1, ["batch", 1, "height", "width"])
                               for n in ("map_a", "map_b")])


def _flat_output(model, helper) -> None:
    model.graph.node.append(helper.make_node("Flatten", ["prob"], ["flat"]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("flat", 1, ["batch", "pixels"]))


def _static_input(model, helper) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for i in (2, 3):
        dims[i].ClearField("dim_param")
        dims[i].dim_value = 64


def _fp16_input(model, helper) -> None:
    for node in model.graph.node:
        node.input[:] = ["images32" if n == "images" else n for n in node.input]
    model.graph.node.insert(0, helper.make_node("Cast", ["images"], ["images32"], to=1))
    model.graph.input[0].type.tensor_type.elem_type = 10  # float16


def test_an_extra_onnx_output_listed_first_is_not_taken_for_the_map(model_files, tmp_path):
    from dbcli import Detector

    edited = _edited_onnx(model_files["onnx"], tmp_path / "extra.onnx", _extra_output_first)
    image = write_rgb(tmp_path / "a.png")
    expected = Detector(model_files["onnx"], device="cpu")(image).to_dict()["detections"]
    assert len(expected) == 1
    assert Detector(edited, device="cpu")(image).to_dict()["detections"] == expected
    fp16 = _edited_onnx(model_files["onnx"], tmp_path / "fp16.onnx", _fp16_input)
    got = Detector(fp16, device="cpu")(image).to_dict()["detections"]  # cast to its input type
    assert len(got) == 1 and abs(got[0]["score"] - expected[0]["score"]) < 0.01


@pytest.mark.parametrize("edit, complaint", [
    (_two_maps_no_prob, "cannot tell which output is the probability map"),
    (_flat_output, "cannot tell which output is the probability map"),
    (_static_input, "fixed size 64x64"),
])
def test_onnx_files_dbnet_cannot_use_are_one_error(model_files, tmp_path, edit, complaint):
    edited = _edited_onnx(model_files["onnx"], tmp_path / "odd.onnx", edit)
    result = invoke("detect", write_rgb(tmp_path / "a.png"), "--weights", edited, "--out", tmp_path / "o.json")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "odd.onnx" in result.stderr and complaint in result.stderr and "Traceback" not in result.output


# --- 7. a probability map holding NaN ---------------------------------------------------------------
def test_a_nan_probability_map_gives_valid_json_and_a_note(tmp_path):
    import numpy as np

    from dbcli.backends.base import Model
    from dbcli.engine.pipeline import run_pipeline
    from dbcli.engine.settings import Settings

    def nan_model(batch):
        prob = np.zeros((batch.shape[0], *batch.shape[2:]), np.float32)
        prob[:, 10:30, 10:60] = 0.9
        prob[:, 12:14, 12:40] = np.nan
        prob[:, 40:42, :] = np.inf
        return prob

    image = write_rgb(tmp_path / "a.png")
    [record] = list(run_pipeline([image], Model(nan_model, {}), Settings(short_side=128)))
    text = json.dumps(record.to_dict(), allow_nan=False)  # raises on NaN / Infinity
    assert json.loads(text)["detections"]
    assert any("a.png" in note and "NaN or infinite" in note for note in record.notes)


# --- 8. eval: --limit, custom JSONL fields, predictions of other images -----------------------------
def _custom_split(root: Path, names=("img_1", "img_2"), **extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, name in enumerate(names):
        write_rgb(root / f"{name}.png", 200 + 8 * i, 150)
        poly = {"points": [[30, 40], [160, 40], [160, 75], [30, 75]], **extra}
        lines.append(json.dumps({"image": f"{name}.png", "polygons": [poly]}))
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("limit", ["-1", "0", "-100"])
def test_eval_limit_below_one_is_refused(model_files, tmp_path, limit):
    root = _custom_split(tmp_path / "data")
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--weights", model_files["onnx"],
                    "--limit", limit)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "--limit" in result.stderr, result.output
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--weights", model_files["onnx"],
                    "--limit", "1")
    assert result.exit_code == 0 and "1 image" in result.stdout, result.output


@pytest.mark.parametrize("field, value", [
    ("ignore", "false"), ("ignore", "true"), ("ignore", 0), ("ignore", 2), ("ignore", None),
    ("exif", "false"), ("exif", 1), ("exif", None),
])
def test_custom_jsonl_booleans_must_be_json_booleans(model_files, tmp_path, field, value):
    root = tmp_path / "data"
    _custom_split(root)
    lines = (root / "test.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    if field == "exif":
        record["exif"] = value
    else:
        record["polygons"][0]["ignore"] = value
    lines[1] = json.dumps(record)
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DBNetError, match=rf"test\.jsonl:2: .*\"{field}\" must be true or false"):
        load_samples("custom", root, "test")
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--weights", model_files["onnx"])
    assert result.exit_code == 1 and "test.jsonl:2" in result.stderr and "Traceback" not in result.output
    record["polygons"][0]["ignore"], record["exif"] = True, False  # real booleans are read as they say
    lines[1] = json.dumps(record)
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    sample = load_samples("custom", root, "test")[1]
    assert sample.ignore == [True] and sample.exif is False


def test_a_deeply_nested_jsonl_line_is_one_error(tmp_path):
    root = _custom_split(tmp_path / "data")
    with open(root / "test.jsonl", "a") as f:
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DBNetError, match=r"test\.jsonl:3: JSON nested too deeply"):
        load_samples("custom", root, "test")


def test_eval_pred_made_on_other_images_with_the_same_names_is_refused(model_files, tmp_path, monkeypatch):
    train = _custom_split(tmp_path / "train", ("img_1", "img_2", "img_3"))
    test = tmp_path / "test"
    test.mkdir()
    for i, name in enumerate(("img_1", "img_2", "img_3")):  # same names and sizes, other pictures
        write_rgb(test / f"{name}.png", 200 + 8 * i, 150, rects=((20, 90, 150, 120),))
    (test / "test.jsonl").write_text((train / "test.jsonl").read_text())
    monkeypatch.chdir(tmp_path)
    pred = tmp_path / "pred.json"
    result = invoke("detect", "train", "--weights", model_files["onnx"], "--out", pred)
    assert result.exit_code == 0, result.output
    result = invoke("eval", "--dataset", "custom", "--data-root", "test", "--pred", pred)
    assert result.exit_code == 1 and result.stderr.count("\n") <= 2, result.output
    assert "other images with the same names" in result.stderr and "img_1.png" in result.stderr
    assert invoke("eval", "--dataset", "custom", "--data-root", "train", "--pred", pred).exit_code == 0
    copy = tmp_path / "copy"  # the same pictures elsewhere: the same bytes, scored
    copy.mkdir()
    for p in train.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    result = invoke("eval", "--dataset", "custom", "--data-root", "copy", "--pred", pred)
    assert result.exit_code == 0, result.output


def test_a_pred_entry_naming_a_symlink_loop_is_one_error(tmp_path):
    root = _custom_split(tmp_path / "data")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"images": [{"file": str(loop), "detections": []}]}))
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--pred", pred)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "loop.png" in result.stderr and "loop" in result.stderr and "Traceback" not in result.output


# --- 9. NO_COLOR, stdout that cannot be written -------------------------------------------------------
def test_no_color_is_honoured_for_error_lines(tmp_path):
    args = ["convert", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "w.pt")]
    coloured = runner.invoke(app, args, color=True, env={"NO_COLOR": ""})
    assert coloured.exit_code == 1 and "\x1b[" in coloured.stderr  # red on a terminal ...
    plain = runner.invoke(app, args, color=True, env={"NO_COLOR": "1"})
    assert plain.exit_code == 1 and plain.stderr.startswith("error: ") and "\x1b[" not in plain.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_that_cannot_be_written_is_named_stdout(model_files, tmp_path):
    import subprocess
    import sys

    image = write_rgb(tmp_path / "a.png")
    for extra in ([], ["--out", "-"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "dbcli", "detect", str(image), "--weights",
                                   str(model_files["onnx"]), *extra], stdout=full, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        assert done.returncode == 1 and "error: stdout: cannot write (No space left on device)" in done.stderr
        assert "None" not in done.stderr


def test_closing_lines_wrap_between_words_on_an_80_column_terminal():
    """detect's closing line (and the other commands') wraps between words on a terminal, each line
    within 80 columns; a long path stays whole; a file or pipe gets one line."""
    import io

    from dbcli.commands.common import terminal_lines

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    line = ("wrote results/2026-12-07/scans/polygons.json: 12 images, 345 text regions, 2 skipped in 12.3 s "
            "(1.0 images/s); 345 crops written to results/2026-12-07/scans/crops")
    wrapped = terminal_lines(line, Terminal(), width=80)
    assert all(len(row) < 80 for row in wrapped.splitlines()) and len(wrapped.splitlines()) >= 2
    assert " ".join(row.strip() for row in wrapped.splitlines()) == line  # only breaks between words
    path = "/very/long/" + "x" * 90 + "/polygons.json"
    assert path in terminal_lines(f"wrote {path}: 1 image", Terminal(), width=80).splitlines()[1]
    assert terminal_lines(line, io.StringIO(), width=80) == line  # not a terminal: as it is


def test_a_closing_line_lost_to_stdout_is_an_error_on_stderr(monkeypatch, capsys):
    """export / convert say what they wrote on stdout: on a full stdout that line goes to stderr with
    the error (exit 1), not a traceback."""
    import typer

    from dbcli.commands import common

    echo = typer.echo

    def full(*args, **kwargs):
        if not kwargs.get("err"):
            raise OSError(28, "No space left on device")
        return echo(*args, **kwargs)

    monkeypatch.setattr(common.typer, "echo", full)
    with pytest.raises(typer.Exit) as info:
        common.say("wrote model.onnx (ONNX, 2.4 MB)")
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == ("error: stdout: cannot write (No space left on device): wrote model.onnx "
                                       "(ONNX, 2.4 MB)\n")
