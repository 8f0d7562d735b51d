"""ONNX files that load but are not what dbnet reads: bad ``dbnet.*`` metadata (JSON that is not an
object, a format version from the future), maps that are no probabilities (scores above 1, int64),
a folder named ``x.onnx``, an upper-case ``.ONNX`` given to the torch backend. Every model is a tiny
graph built with ``onnx.helper`` (no network, no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from generated_files import invoke, write_rgb

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dbcli.backends.onnx_backend import OnnxBackend  # noqa: E402
from dbcli.errors import DBNetError  # noqa: E402

GOOD_META = {"dbnet.format": "dbnet-onnx/1", "dbnet.model": json.dumps({"arch": "tiny"}),
             "dbnet.postprocess": "{}", "dbnet.short_side": "64"}


def tiny_export(path, meta: dict | None = None, gain: float = 1.0, out_type: str = "float") -> None:
    """A graph ``images (N, 3, H, W) -> prob (N, 1, H, W)``: ``gain * sigmoid(mean over channels)``,
    cast to int64 when ``out_type == "int64"``; ``meta``: its ``metadata_props``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images", "axes"], ["m"], keepdims=1),
             helper.make_node("Sigmoid", ["m"], ["s"]),
             helper.make_node("Mul", ["s", "gain"], ["p" if out_type == "int64" else "prob"])]
    out = TensorProto.FLOAT
    if out_type == "int64":
        nodes.append(helper.make_node("Cast", ["p"], ["prob"], to=TensorProto.INT64))
        out = TensorProto.INT64
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes"),
             numpy_helper.from_array(np.array(gain, np.float32), "gain")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("prob", out, ["n", 1, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in (GOOD_META if meta is None else meta).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))


def test_the_tiny_export_loads(tmp_path):
    tiny_export(tmp_path / "m.onnx")
    backend = OnnxBackend(tmp_path / "m.onnx", device="cpu")
    prob = backend(np.zeros((1, 3, 8, 8), np.float32))
    assert prob.shape == (1, 8, 8) and np.allclose(prob, 0.5)


@pytest.mark.parametrize("key, value, message", [
    ("dbnet.model", "[1, 2]", "dbnet.model is a JSON list, not an object"),
    ("dbnet.model", "3", "dbnet.model is a JSON int, not an object"),
    ("dbnet.postprocess", '"x"', "dbnet.postprocess is a JSON str, not an object"),
    ("dbnet.train", "null", "dbnet.train is a JSON NoneType, not an object"),
    ("dbnet.model", "{not json", "bad dbnet metadata (dbnet.model:"),
    ("dbnet.short_side", "-5", "not a positive whole number"),
    ("dbnet.format", "dbnet-onnx/99", "'dbnet-onnx/99', which this dbnet does not read"),
    ("dbnet.format", "other/1", "not a dbnet ONNX export"),
])
def test_bad_metadata_is_one_line(tmp_path, key, value, message):
    path = tmp_path / "m.onnx"
    tiny_export(path, {**GOOD_META, key: value})
    with pytest.raises(DBNetError, match="^" + str(path)) as info:
        OnnxBackend(path, device="cpu")
    assert message in str(info.value)
    result = invoke("detect", write_rgb(tmp_path / "a.png", 64, 48, ()), "--weights", path)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_scores_above_one_are_clipped_with_a_note(tmp_path):
    """A model without its sigmoid's bound (here 3 * sigmoid): the JSON's scores stay in [0, 1] and the
    run says why, naming the image."""
    tiny_export(tmp_path / "m.onnx", gain=3.0)
    image = write_rgb(tmp_path / "a.png", 64, 48, [(10, 10, 50, 30)])
    out = tmp_path / "o.json"
    result = invoke("detect", image, "--weights", tmp_path / "m.onnx", "--out", out, "--box-thresh", "0.1")
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["images"][0]
    assert entry["detections"] and all(0 <= d["score"] <= 1 for d in entry["detections"])
    assert "a.png" in result.stderr and "outside [0, 1] (clipped)" in result.stderr, result.stderr


def test_rounding_just_above_one_is_clipped_without_a_note():
    from dbcli.engine.pipeline import finite_map

    prob, note = finite_map(np.array([[0.2, 1.0005]], np.float32), "a.png")
    assert note is None and prob.max() == 1.0
    prob, note = finite_map(np.array([[-0.5, 0.5]], np.float32), "a.png")
    assert prob.min() == 0.0 and "a.png" in note


def test_an_int64_map_is_refused(tmp_path):
    tiny_export(tmp_path / "m.onnx", out_type="int64")
    with pytest.raises(DBNetError, match="'prob' is tensor\\(int64\\)"):
        OnnxBackend(tmp_path / "m.onnx", device="cpu")


def test_a_folder_named_onnx(tmp_path):
    (tmp_path / "x.onnx").mkdir()
    image = write_rgb(tmp_path / "a.png", 64, 48, ())
    for backend in ("auto", "torch", "onnx"):
        result = invoke("detect", image, "--weights", tmp_path / "x.onnx", "--backend", backend)
        assert result.exit_code == 1 and "x.onnx: a folder" in result.output, (backend, result.output)


def test_upper_case_onnx_suffix(tmp_path):
    path = tmp_path / "M.ONNX"
    tiny_export(path)
    image = write_rgb(tmp_path / "a.png", 64, 48, ())
    torch_run = invoke("detect", image, "--weights", path, "--backend", "torch")
    assert torch_run.exit_code == 1 and "an ONNX model, not a .pt weights file" in torch_run.output
    assert "use --backend onnx" in torch_run.output
    # export has no --backend: it says what the file is, without suggesting an option it lacks
    exported = invoke("export", "--weights", path, "--out", tmp_path / "e.onnx")
    assert exported.exit_code == 1 and "an ONNX model, not a .pt weights file" in exported.output
    assert "--backend" not in exported.output
