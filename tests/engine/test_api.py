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
