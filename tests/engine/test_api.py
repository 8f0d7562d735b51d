"""The Python API (``from dbcli import Detector``): the same detections as ``dbnet detect`` for a file,
and for the same pixels given as a numpy array or a PIL image; the README's example runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import runner
from PIL import Image
from planted_model import planted_files, rect_image

from dbcli import DBNetError, Detector
from dbcli.cli import app

ROOT = Path(__file__).resolve().parents[2]
RECTS = [(20, 30, 140, 60), (60, 100, 230, 130)]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


def test_detector_gives_what_dbnet_detect_gives(model_files, tmp_path):
    rgb = rect_image(260, 170, RECTS)
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "p.json"
    result = runner.invoke(app, ["detect", str(path), "--weights", str(model_files["pt"]), "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    expected = data["images"][0]
    assert len(expected["detections"]) == len(RECTS)

    detector = Detector(model_files["pt"], device="cpu")
    assert detector.info == data["model"] and detector.settings.to_dict() == data["settings"]
    one = detector(path)
    assert one.to_dict() == expected  # a file: the same entry, file name included
    assert isinstance(one.detections[0].points, np.ndarray) and one.detections[0].points.shape[1] == 2
    many = detector([rgb, Image.fromarray(rgb), str(path)])  # a list: a list, in order
    assert [r.to_dict()["detections"] for r in many] == [expected["detections"]] * 3
    assert [(r.width, r.height) for r in many] == [(260, 170)] * 3


def test_detector_refuses_what_it_cannot_read(model_files, tmp_path):
    detector = Detector(model_files["onnx"], device="cpu")  # the onnxruntime backend, by the suffix
    assert detector.info["backend"] == "onnx"
    with pytest.raises(DBNetError, match="missing.png"):
        detector(tmp_path / "missing.png")
    with pytest.raises(DBNetError, match="uint8 RGB"):
        detector(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(DBNetError, match="thresh"):
        Detector(model_files["onnx"], device="cpu", thresh=2.0)


@pytest.mark.parametrize("options, message", [
    ({"exif": "false"}, "--exif must be True or False, got 'false'"),
    ({"polygon": "yes"}, "--polygon must be True or False"),
    ({"exif": 0}, "--exif must be True or False"),
    ({"sort": 3}, "--sort must be text"),
    ({"backend": None}, "--backend must be text"),
    ({"short_side": "736"}, "--short-side must be a finite number"),
])
def test_options_of_the_wrong_type_are_refused_before_loading(options, message, monkeypatch):
    """API booleans given as strings (truthy) and other wrong types: one ``DBNetError`` naming the
    option, raised before any model is loaded."""
    import dbcli.engine.load as load

    monkeypatch.setattr(load, "load_model", lambda *a, **k: pytest.fail("loaded a model for a bad option"))
    with pytest.raises(DBNetError) as info:
        Detector("general", device="cpu", **options)
    assert message in str(info.value)


def test_call_arguments_are_checked(model_files):
    detector = Detector(model_files["onnx"], device="cpu")
    with pytest.raises(DBNetError, match=r"an empty path \(''\) names no image"):
        detector("")
    with pytest.raises(DBNetError, match="crops must be True or False"):
        detector(rect_image(64, 48, RECTS[:1]), crops="false")


def test_pil_modes_with_premultiplied_alpha(model_files):
    """``La`` (premultiplied gray + alpha) converts to RGBA only through LA: its pixels as ``LA``'s."""
    detector = Detector(model_files["onnx"], device="cpu")
    gray = Image.fromarray(rect_image(260, 170, RECTS)).convert("L")
    la = Image.merge("LA", (gray, Image.new("L", gray.size, 255)))
    expected = detector(la).to_dict()["detections"]
    assert len(expected) == len(RECTS)
    assert detector(la.convert("La")).to_dict()["detections"] == expected
    assert detector(la.convert("RGBA").convert("RGBa")).to_dict()["detections"] == expected


def test_a_detector_pickles_as_its_options(model_files):
    """Pickling sends the options; the copy loads the same weights with them and gives the same
    detections (``multiprocessing`` with spawn, ``concurrent.futures``)."""
    import pickle

    detector = Detector(model_files["onnx"], device="cpu", box_thresh=0.55, polygon=True)
    copy = pickle.loads(pickle.dumps(detector))
    assert copy is not detector and copy.options == detector.options and copy.info == detector.info
    image = rect_image(260, 170, RECTS)
    assert copy(image).to_dict() == detector(image).to_dict()


def test_the_readme_example_runs(monkeypatch, capsys, tmp_path):
    """The README's example runs in an empty folder (it makes its own image: .ci/wheel_check runs it
    from an installed wheel, away from the checkout) and prints each detection and its crop."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    lines = capsys.readouterr().out.splitlines()
    detections = [line for line in lines if re.match(r"0\.\d+ \[\[", line)]
    shapes = [line for line in lines if re.match(r"\(\d+, \d+, 3\)$", line)]
    assert len(detections) >= 3 and len(shapes) == len(detections) == len(lines) // 2  # one crop per detection
