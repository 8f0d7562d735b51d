"""`dbnet export` (issue 4): BatchNorm folding, ONNX with dynamic shapes + onnxruntime parity,
TorchScript, and a loud failure when the check does not hold."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from generated_files import runner
from torch import nn

from dbcli.backends.export import ProbMapModel, inference_module
from dbcli.cli import app
from dbcli.models import DBNet, ModelConfig
from dbcli.models.fold import count_batchnorm, fold_batchnorm
from dbcli.weights import build_model, load_weights, save_weights


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BN statistics and affine parameters (the init ones make folding trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.8 + 0.6)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(1)
    model = randomise_batchnorm(DBNet())
    path = tmp_path_factory.mktemp("export") / "random.pt"
    # fp16 storage like the shipped weights; build_model turns it into fp32
    save_weights(path, model, half=True, postprocess={"thresh": 0.35, "box_thresh": 0.55}, short_side=640)
    return path


_REFERENCE: dict = {}


def reference_prob(weights_path, x: np.ndarray) -> np.ndarray:
    """The PyTorch model's probability map (unfolded, fp32)."""
    key = str(weights_path)
    if key not in _REFERENCE:
        _REFERENCE[key] = build_model(load_weights(weights_path))
    model = _REFERENCE[key]
    with torch.inference_mode():
        return model(torch.from_numpy(x))["prob"].numpy()


def test_fold_batchnorm_matches_unfolded():
    torch.manual_seed(0)
    model = randomise_batchnorm(DBNet())
    folded = fold_batchnorm(copy.deepcopy(model))
    assert count_batchnorm(model) >= 20 and count_batchnorm(folded) == 0
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        a = model(x, with_thresh=True)
        b = folded(x, with_thresh=True)
    for key in ("prob", "thresh"):
        assert torch.allclose(a[key], b[key], atol=1e-4), (key, (a[key] - b[key]).abs().max())
    # the fold is not a no-op: the convs really changed
    assert not torch.equal(model.backbone.conv1.weight, folded.backbone.conv1.weight)
    with pytest.raises(ValueError):
        fold_batchnorm(copy.deepcopy(model).train())


def test_fold_batchnorm_deformable():
    torch.manual_seed(0)
    model = randomise_batchnorm(DBNet(ModelConfig(dcn=True)))
    with torch.no_grad():  # non-zero offsets, so the deformable path really deforms
        for m in model.modules():
            if type(m).__name__ == "DeformConv2d":
                m.offset_conv.weight.normal_(0, 0.01)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert count_batchnorm(folded) == 0
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert torch.allclose(model(x)["prob"], folded(x)["prob"], atol=1e-4)


def test_inference_module_any_size():
    torch.manual_seed(0)
    model = randomise_batchnorm(DBNet())
    module = inference_module(model)
    x = torch.randn(1, 3, 70, 101)  # not a multiple of 32
    with torch.inference_mode():
        out = module(x)
        ref = model(x)["prob"]
    assert out.shape == (1, 1, 70, 101)
    assert (out - ref).abs().max() < 1e-4


def _reported_diff(output: str) -> float:
    match = re.search(r"max \|P_\w+ - P_torch\| = ([0-9.eE+-]+)", output)
    assert match, output
    return float(match.group(1))


def test_export_onnx_dynamic_shapes_and_parity(weights_file, tmp_path):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "--weights", str(weights_file), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _reported_diff(result.stdout) < 1e-4

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # BN folded into the convs
    assert [o.name for o in proto.graph.output] == ["prob"]  # the probability map only
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dbnet.format"].startswith("dbnet-onnx/")
    assert '"arch": "resnet18"' in meta["dbnet.model"] and meta["dbnet.short_side"] == "640"
    assert '"box_thresh": 0.55' in meta["dbnet.postprocess"]

    # Our own parity check, on shapes the export never saw (batch 3; sides not multiples of 32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(3, 3, 100, 170), (1, 3, 64, 64)]:
        x = np.random.default_rng(sum(shape)).normal(0, 1, shape).astype(np.float32)
        got = session.run(None, {"images": x})[0]
        want = reference_prob(weights_file, x)
        assert got.shape == want.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - want).max() < 1e-4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_torchscript(weights_file, tmp_path):
    out = tmp_path / "model.ts"
    result = runner.invoke(app, ["export", "--weights", str(weights_file), "--format", "torchscript",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _reported_diff(result.stdout) < 1e-4
    loaded = torch.jit.load(str(out))
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 90, 130)).astype(np.float32)
    with torch.inference_mode():
        got = loaded(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 1, 90, 130)
    assert np.abs(got - reference_prob(weights_file, x)).max() < 1e-4
    refused = runner.invoke(app, ["detect", str(out), "--weights", str(out)])  # the .ts given as weights
    assert refused.exit_code == 1 and "a TorchScript file; dbnet loads .pt weights files or .onnx" in refused.stderr


def test_export_fails_loudly(weights_file, tmp_path):
    out = tmp_path / "strict.onnx"
    # A zero tolerance can never be met: the command must fail, say why, and write nothing.
    result = runner.invoke(app, ["export", "--weights", str(weights_file), "--out", str(out), "--tolerance", "0"])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "verification FAILED" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()

    not_weights = tmp_path / "junk.pt"
    not_weights.write_bytes(b"\x00" * 100)
    result = runner.invoke(app, ["export", "--weights", str(not_weights), "--out", str(tmp_path / "j.onnx")])
    assert result.exit_code == 1 and "error:" in result.stderr

    result = runner.invoke(app, ["export", "--weights", str(weights_file), "--format", "tflite",
                                 "--out", str(tmp_path / "x.tflite")])
    assert result.exit_code == 1 and "unknown export format" in result.stderr


def test_exported_graph_is_prob_only_module():
    model = DBNet().eval()
    module = inference_module(model)
    assert isinstance(module, ProbMapModel) and not module.training
    assert count_batchnorm(module) == 0
    assert count_batchnorm(model) > 0  # the source model is left untouched
