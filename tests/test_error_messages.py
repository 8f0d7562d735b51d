"""Bad data, predictions, weights and output paths are one line naming the file (and line),
never a traceback; export checks its output before the slow work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from generated_files import invoke, write_rgb
from planted_model import planted_files

from dbcli.data.datasets import load_samples
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import evaluate_predictions

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



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
    import dbcli.interop.export as export_module

    def too_early(*args, **kwargs):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(export_module, "_export_onnx", too_early)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = invoke("export", "--weights", model_files["pt"], "--out", blocker / "model.onnx")
    assert result.exit_code == 1 and "cannot write" in result.output and "model.onnx" in result.output
