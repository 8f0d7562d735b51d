"""dbnet convert: a PaddleOCR-style DB detector in ONNX -> dbnet weights. The tests build their own
source models (a DB-MobileNetV3 in PP-OCR's layout, exported with its BatchNorm layers and PP-OCR's
BGR input convention), so the oracle is the very tensors they were made from."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from generated_files import runner

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from dbcli.cli import app  # noqa: E402
from dbcli.errors import DBNetError  # noqa: E402
from dbcli.imaging import normalize  # noqa: E402
from dbcli.interop.paddleocr import convert, paddle_input, verification_images  # noqa: E402
from dbcli.models import DBNet, ModelConfig  # noqa: E402
from dbcli.models.dbnet import BgrInput  # noqa: E402
from dbcli.weights import build_model, load_weights  # noqa: E402


class PaddleStyle(torch.nn.Module):
    """What a PP-OCR inference export computes: BGR-normalised input -> P (no dbnet input map)."""

    def __init__(self, model: DBNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.prob_head(self.model.neck(self.model.backbone(x)))


def source_model(scale: float = 0.35, se: bool = True, neck: int = 32, seed: int = 0) -> DBNet:
    """A DB-MobileNetV3 with every tensor random, BatchNorm statistics included."""
    torch.manual_seed(seed)
    model = DBNet(ModelConfig("mobilenet_v3", scale=scale, se=se, neck_channels=neck)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def to_onnx(module: torch.nn.Module) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 64, 64),), buffer, input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def biases_as_adds(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite each biased Conv / ConvTranspose as PaddlePaddle's exporter writes it: the conv without
    bias, then ``Add(conv, Reshape(bias, [1, C, 1, 1]))``."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    nodes = []
    for i, node in enumerate(graph.node):
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 3 and node.input[2]:
            bias, raw = node.input[2], f"{node.output[0]}_nobias"
            shape_name = f"shape_{i}"
            graph.initializer.append(numpy_helper.from_array(np.array([1, -1, 1, 1], np.int64), shape_name))
            conv = helper.make_node(node.op_type, list(node.input[:2]), [raw], name=node.name)
            conv.attribute.extend(node.attribute)
            nodes += [conv, helper.make_node("Reshape", [bias, shape_name], [f"{bias}_r{i}"]),
                      helper.make_node("Add", [raw, f"{bias}_r{i}"], [node.output[0]])]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    return proto


@pytest.fixture(scope="module")
def paddle_like(tmp_path_factory):
    model = source_model()
    path = tmp_path_factory.mktemp("src") / "det.onnx"
    proto = biases_as_adds(to_onnx(PaddleStyle(model)))
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) > 0
    path.write_bytes(proto.SerializeToString())
    return model, path


def test_bgr_input_gives_paddle_normalisation():
    images = verification_images()
    ours = torch.from_numpy(np.stack([normalize(img) for img in images]))
    torch.testing.assert_close(BgrInput()(ours), torch.from_numpy(paddle_input(images)), atol=1e-5, rtol=0)


def test_convert_loads_every_tensor_and_matches_the_source(paddle_like, tmp_path):
    source, path = paddle_like
    result = convert(path, tmp_path / "w.pt", origin="a test model")
    assert result.max_diff < 1e-4
    assert result.config == {**ModelConfig("mobilenet_v3", scale=0.35, se=True, neck_channels=32,
                                           input_order="bgr").to_dict()}
    weights = load_weights(tmp_path / "w.pt")
    assert weights["source"]["licence"] == "Apache-2.0" and weights["source"]["origin"] == "a test model"
    assert weights["postprocess"] == {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5}
    converted = build_model(weights)
    expected = source.state_dict()
    state = converted.state_dict()
    for name, tensor in expected.items():
        if name.startswith("thresh_head."):
            continue
        assert torch.equal(state[name], tensor), name
    # the threshold branch starts as a copy of the probability branch
    for name, tensor in converted.prob_head.state_dict().items():
        assert torch.equal(converted.thresh_head.state_dict()[name], tensor)
    # dbnet's RGB input gives the source's map on its own BGR input
    images = verification_images(seed=3)
    with torch.inference_mode():
        got = converted(torch.from_numpy(np.stack([normalize(i) for i in images])))["prob"]
        want = PaddleStyle(source)(torch.from_numpy(paddle_input(images)))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_converted_model_exports_and_detects(paddle_like, tmp_path):
    from dbcli.interop.export import export

    _, path = paddle_like
    convert(path, tmp_path / "w.pt")
    result = export(tmp_path / "w.pt", "onnx", tmp_path / "w.onnx")
    assert result.max_diff < 1e-4


def test_folded_batchnorm_is_another_family(tmp_path):
    from dbcli.models.fold import fold_batchnorm

    folded = fold_batchnorm(source_model())
    path = tmp_path / "v4.onnx"
    path.write_bytes(to_onnx(PaddleStyle(folded)).SerializeToString())
    with pytest.raises(DBNetError, match="no BatchNormalization") as info:
        convert(path, tmp_path / "out.pt")
    assert str(path) in str(info.value)
    assert not (tmp_path / "out.pt").exists()


def test_a_different_network_is_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 1, 1), torch.nn.Sigmoid()).eval()
    path = tmp_path / "other.onnx"
    path.write_bytes(to_onnx(net).SerializeToString())
    with pytest.raises(DBNetError, match="not a PP-OCRv3-style DB detector"):
        convert(path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_a_layer_that_does_not_fit_is_named(paddle_like, tmp_path):
    """A model whose neck runs a layer more than any MobileNetV3 configuration fails by layer name."""
    source, _ = paddle_like
    proto = to_onnx(PaddleStyle(source))
    from onnx import numpy_helper

    convs = [i for i, t in enumerate(proto.graph.initializer) if len(t.dims) == 4]
    tensor = proto.graph.initializer[convs[5]]
    wider = np.zeros((tensor.dims[0] + 8, *tensor.dims[1:]), np.float32)  # 8 output channels too many
    proto.graph.initializer[convs[5]].CopyFrom(numpy_helper.from_array(wider, tensor.name))
    path = tmp_path / "bad.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(DBNetError, match="does not fit a DB-MobileNetV3"):
        convert(path, tmp_path / "out.pt")


def test_cli_convert(paddle_like, tmp_path):
    _, path = paddle_like
    result = runner.invoke(app, ["convert", str(path), "--out", str(tmp_path / "w.pt"), "--origin", "test"])
    assert result.exit_code == 0, result.output
    assert "verified: max |P_dbnet - P_source|" in result.output
    bad = runner.invoke(app, ["convert", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "x.pt")])
    assert bad.exit_code == 1 and "missing.onnx: no such file" in bad.output


def small_graph(ops: list[str], path, external: bool = False) -> None:
    """A tiny ONNX graph built with ``onnx.helper``: ``Conv`` (8 channels, 3x3), ``BN``, ``ConvT``
    (x2 up, to 1 channel), ``GAP`` (x + GlobalAveragePool(x)), ``Sig``; enough to pass the family
    check (pooling, two transposed convs, a sigmoid) and reach the layer matching."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, cur, ch = [], [], "x", 3
    for i, op in enumerate(ops):
        out = f"t{i}"
        if op == "Conv":
            inits.append(numpy_helper.from_array(rng.random((8, ch, 3, 3), np.float32), f"w{i}"))
            nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [out], pads=[1, 1, 1, 1]))
            ch = 8
        elif op == "BN":
            names = [f"{k}{i}" for k in "sbmv"]
            inits += [numpy_helper.from_array(np.full(ch, v, np.float32), n) for n, v in zip(names, (1, 0, 0, 1))]
            nodes.append(helper.make_node("BatchNormalization", [cur, *names], [out]))
        elif op == "ConvT":
            inits.append(numpy_helper.from_array(rng.random((ch, 1, 2, 2), np.float32), f"w{i}"))
            nodes.append(helper.make_node("ConvTranspose", [cur, f"w{i}"], [out], strides=[2, 2]))
            ch = 1
        elif op == "GAP":
            nodes += [helper.make_node("GlobalAveragePool", [cur], [f"g{i}"]),
                      helper.make_node("Add", [cur, f"g{i}"], [out])]
        else:
            nodes.append(helper.make_node("Sigmoid", [cur], [out]))
        cur = out
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)


@pytest.mark.parametrize("ops, external, message", [
    (["BN", "GAP", "ConvT", "BN", "ConvT", "Sig"], False, "does not fit a DB-MobileNetV3"),  # no Conv at all
    (["Conv", "BN", "GAP", "ConvT", "BN", "ConvT", "Sig"], False, "does not fit a DB-MobileNetV3"),  # zero-width
    (["Conv", "BN", "GAP", "ConvT", "Conv", "BN", "ConvT", "Sig"], False, "does not fit a DB-MobileNetV3"),
    (["Conv", "BN", "GAP", "ConvT", "BN", "ConvT", "Sig"], True, "external data"),
])
def test_odd_graphs_get_one_line(tmp_path, ops, external, message):
    path = tmp_path / "odd.onnx"
    small_graph(ops, path, external)
    result = runner.invoke(app, ["convert", str(path), "--out", str(tmp_path / "w.pt")])
    assert result.exit_code == 1
    assert message in result.output and str(path) in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "w.pt").exists()


def test_convert_names_folders_and_fifos(tmp_path):
    import os

    folder = tmp_path / "x.onnx"
    folder.mkdir()
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    for source, message in ((folder, "a folder, not an ONNX model file"), (fifo, "a FIFO")):
        result = runner.invoke(app, ["convert", str(source), "--out", str(tmp_path / "w.pt")])
        assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_tolerance_must_be_finite(paddle_like, tmp_path, value):
    """nan or inf would turn the verification off (nothing compares above nan, everything below
    inf): refused before any work. (0 stays allowed: no export meets it, see test_export.)"""
    _, path = paddle_like
    result = runner.invoke(app, ["convert", str(path), "--out", str(tmp_path / "w.pt"), "--tolerance", value])
    assert result.exit_code == 1 and "--tolerance" in result.output and "must be a finite number" in result.output
    exported = runner.invoke(app, ["export", "--out", str(tmp_path / "m.onnx"), "--tolerance", value])
    assert exported.exit_code == 1 and "must be a finite number" in exported.output, exported.output
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "m.onnx").exists()
