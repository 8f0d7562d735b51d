"""The DBNet model (SPEC "The model") and the deformable convolution."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from synth import random_rects, render

from dbcli.data.labels import make_targets
from dbcli.errors import DBNetError
from dbcli.imaging import normalize
from dbcli.models import DBNet, MobileNetV3, ModelConfig, ResNet, count_parameters
from dbcli.models.deform_conv import DeformConv2d, deform_conv2d_reference
from dbcli.training.losses import db_loss
from dbcli.training.pretrained import load_backbone_state


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These small models run fastest on one thread; on a busy 2-core machine (CI, or a training
    run beside the tests) more threads mostly spin and wait: 5x slower wall time measured."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model18():
    torch.manual_seed(0)
    return DBNet(ModelConfig(arch="resnet18"))


def test_output_shapes_for_odd_sizes_train_and_eval(model18):
    x = torch.randn(2, 3, 97, 131)
    model18.train()
    out = model18(x)
    assert set(out) == {"prob", "thresh", "binary"}
    for v in out.values():
        assert v.shape == (2, 1, 97, 131)
        assert v.min() >= 0 and v.max() <= 1
    model18.eval()
    with torch.no_grad():
        out = model18(x)
        assert set(out) == {"prob"} and out["prob"].shape == (2, 1, 97, 131)
        out = model18(x, with_thresh=True)
        assert set(out) == {"prob", "thresh", "binary"} and out["thresh"].shape == (2, 1, 97, 131)
        # a size that needs no padding, and one smaller than a stride-32 cell
        assert model18(torch.randn(1, 3, 64, 96))["prob"].shape == (1, 1, 64, 96)
        assert model18(torch.randn(1, 3, 20, 45))["prob"].shape == (1, 1, 20, 45)


def test_padding_does_not_change_the_valid_region(model18):
    """Outputs for an image equal the crop of the outputs for the same image zero-padded to 32."""
    model18.eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        a = model18(x)["prob"]
        b = model18(F.pad(x, (0, 160 - 131, 0, 128 - 97)))["prob"][..., :97, :131]
    torch.testing.assert_close(a, b)


def test_binarization_k50(model18):
    assert model18.config.k == 50
    model18.eval()
    with torch.no_grad():
        out = model18(torch.randn(1, 3, 64, 64), with_thresh=True)
    expected = 1.0 / (1.0 + torch.exp(-50.0 * (out["prob"] - out["thresh"])))
    torch.testing.assert_close(out["binary"], expected)
    p, t = torch.tensor([0.5, 0.52, 0.3]), torch.tensor([0.5, 0.5, 0.4])
    b = model18.step_function(p, t)
    torch.testing.assert_close(b, torch.tensor([0.5, 1 / (1 + torch.exp(torch.tensor(-1.0))).item(),
                                                1 / (1 + torch.exp(torch.tensor(5.0))).item()]))
    expected = 1 / (1 + torch.exp(torch.tensor(-0.2)).item())
    assert DBNet(ModelConfig(k=10)).step_function(p, t)[1] == pytest.approx(expected)


def _targets(polys, h, w):
    t = make_targets(polys, [False] * len(polys), h, w)
    return {k: torch.from_numpy(getattr(t, k))[None] for k in ("gt", "mask", "thresh_map", "thresh_mask")}


def test_gradients_reach_both_heads_and_the_backbone(model18):
    model18.train()
    model18.zero_grad()
    polys = random_rects(0, 96, 96, 2, min_height=16, max_height=24, max_aspect=3)
    x = torch.from_numpy(normalize(render(polys, 96, 96, 0)))[None]
    db_loss(model18(x), _targets(polys, 96, 96))["loss"].backward()
    for name in ("prob_head", "thresh_head", "neck", "backbone"):
        module = getattr(model18, name)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum().item() for g in grads) > 0, name
    assert model18.backbone.conv1.weight.grad.abs().sum() > 0
    # the threshold loss alone trains the threshold head and not the probability head
    model18.zero_grad()
    out = model18(x)
    t = _targets(polys, 96, 96)
    (out["thresh"].squeeze(1) - t["thresh_map"]).abs().mean().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model18.prob_head.parameters())
    assert sum(p.grad.abs().sum() for p in model18.thresh_head.parameters()) > 0
    model18.zero_grad()


# torchvision's ResNet parameter counts without the 1000-class fc layer
TORCHVISION_BACKBONE_PARAMS = {"resnet18": 11_689_512 - 513_000, "resnet34": 21_797_672 - 513_000,
                               "resnet50": 25_557_032 - 2_049_000}
TORCHVISION_STATE_KEYS = {"resnet18": 122 - 2, "resnet34": 218 - 2, "resnet50": 320 - 2}


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_parameter_counts(arch):
    model = DBNet(ModelConfig(arch=arch))
    assert count_parameters(model.backbone) == TORCHVISION_BACKBONE_PARAMS[arch]
    assert len(model.backbone.state_dict()) == TORCHVISION_STATE_KEYS[arch]
    total = count_parameters(model)
    if arch == "resnet18":
        assert 11.5e6 < total < 13e6, total  # DB-ResNet-18: about 12M
    assert total > count_parameters(model.backbone)


def test_torchvision_parameter_names():
    names = set(ResNet("resnet18").state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
                "layer1.1.bn2.bias", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                "layer4.1.conv2.weight"):
        assert key in names, key
    names50 = set(ResNet("resnet50").state_dict())
    for key in ("layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.weight"):
        assert key in names50, key
    # torchvision ResNet v1.5: the stride sits on the 3x3 conv of a bottleneck
    assert ResNet("resnet50").layer2[0].conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="resnet18"):
        ResNet("resnet101")


@pytest.mark.parametrize("wrap", ["plain", "module_prefix", "state_dict_key"])
def test_torchvision_state_dict_loads(tmp_path, wrap):
    torch.manual_seed(1)
    source = ResNet("resnet18")
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    state = dict(source.state_dict())
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    if wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "state_dict_key":
        state = {"state_dict": state, "epoch": 90}
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)

    model = DBNet(ModelConfig(arch="resnet18"))
    missing, unexpected = load_backbone_state(model, str(path))
    assert missing == []
    assert sorted(unexpected) == ["fc.bias", "fc.weight"]
    for name, value in source.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, msg=name)


def test_unusable_backbone_files_give_a_one_line_error(tmp_path):
    model = DBNet(ModelConfig(arch="resnet18"))
    r50 = tmp_path / "r50.pth"
    torch.save(ResNet("resnet50").state_dict(), r50)
    with pytest.raises(DBNetError, match=r"r50\.pth: .*do not fit the resnet18 backbone"):
        load_backbone_state(model, str(r50))
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(DBNetError, match="none of its 1 keys"):
        load_backbone_state(model, str(other))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(DBNetError, match="notes.pth: not a PyTorch state dict"):
        load_backbone_state(model, str(text))
    with pytest.raises(DBNetError, match="missing.pth: PyTorch state dict not found"):
        load_backbone_state(model, str(tmp_path / "missing.pth"))
    os.mkfifo(tmp_path / "pipe.pth")  # refused by type, never opened (it would block torch.load)
    with pytest.raises(DBNetError, match="pipe.pth: a FIFO .named pipe., not a regular file"):
        load_backbone_state(model, str(tmp_path / "pipe.pth"))


def test_torchvision_state_dict_into_dcn_model(tmp_path):
    """Only the offset predictors (not in torchvision) are missing; the conv weights load."""
    source = ResNet("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    model = DBNet(ModelConfig(arch="resnet18", dcn=True))
    missing, unexpected = load_backbone_state(model, str(path))
    assert unexpected == []
    assert missing and all(".offset_conv." in k for k in missing)
    assert len(missing) == 2 * 2 * 3  # weight + bias, 2 blocks x 3 stages
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, source.layer3[1].conv2.weight)


# --- deformable convolution ------------------------------------------------------------------------
def _conv_at(x: torch.Tensor, w: torch.Tensor, dy: int = 0, dx: int = 0) -> torch.Tensor:
    """A 3x3, stride 1, padding 1 conv whose taps all read ``dy`` rows and ``dx`` columns further
    (zero outside the input): ``out[y, x] = sum w[ky, kx] * in[y - 1 + ky + dy, x - 1 + kx + dx]``."""
    h, wd = x.shape[-2:]
    p = 1 + max(abs(dy), abs(dx))
    full = F.conv2d(F.pad(x, (p, p, p, p)), w)  # full[i, j] reads in[i + ky - p, j + kx - p]
    return full[..., p - 1 + dy: p - 1 + dy + h, p - 1 + dx: p - 1 + dx + wd]


@pytest.mark.parametrize("size, stride", [((9, 11), 1), ((9, 11), 2), ((1, 7), 1), ((5, 1), 2), ((1, 1), 1)])
def test_reference_dcn_with_zero_offsets_is_a_conv(size, stride):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    expected = F.conv2d(x, w, b, stride=stride, padding=1)
    ho, wo = expected.shape[-2:]
    offset = torch.zeros(2, 18, ho, wo, dtype=torch.float64)
    mask = torch.ones(2, 9, ho, wo, dtype=torch.float64)
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask, w, b, stride, 1), expected)
    # the mask modulates every tap
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask * 0.5, w, None, stride, 1),
                               0.5 * F.conv2d(x, w, stride=stride, padding=1))


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, -2), (2, 3), (-1, -1)])
def test_reference_dcn_with_constant_integer_offset_is_a_shifted_conv(dy, dx):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 10, 13, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    offset = torch.zeros(1, 18, 10, 13, dtype=torch.float64)
    offset[:, 0::2] = dy  # torchvision layout: (dy, dx) per tap
    offset[:, 1::2] = dx
    mask = torch.ones(1, 9, 10, 13, dtype=torch.float64)
    expected = _conv_at(x, w, dy, dx)
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask, w, None, 1, 1), expected)


def test_reference_dcn_fractional_offset_is_bilinear():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 8, 9, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    offset = torch.zeros(1, 18, 8, 9, dtype=torch.float64)
    offset[:, 1::2] = 0.25  # a quarter pixel to the right
    mask = torch.ones(1, 9, 8, 9, dtype=torch.float64)
    expected = 0.75 * _conv_at(x, w) + 0.25 * _conv_at(x, w, 0, 1)
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask, w, None, 1, 1), expected)


def test_reference_dcn_per_tap_offsets():
    """Offsets on one tap only move that tap: compare with an explicit per-tap sum."""
    torch.manual_seed(3)
    x = torch.randn(1, 2, 7, 8, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    offset = torch.zeros(1, 18, 7, 8, dtype=torch.float64)
    offset[:, 2 * 4] = 1.0  # centre tap (k = 4) looks one row down
    mask = torch.ones(1, 9, 7, 8, dtype=torch.float64)
    expected = torch.zeros(1, 4, 7, 8, dtype=torch.float64)
    for k in range(9):
        ky, kx = divmod(k, 3)
        tap = torch.zeros_like(w)
        tap[:, :, ky, kx] = w[:, :, ky, kx]
        expected += _conv_at(x, tap, 1 if k == 4 else 0, 0)
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask, w, None, 1, 1), expected)


def test_reference_dcn_matches_torchvision_when_available():
    tv_ops = pytest.importorskip("torchvision.ops")
    torch.manual_seed(4)
    x = torch.randn(2, 3, 9, 10)
    w = torch.randn(4, 3, 3, 3)
    offset = torch.randn(2, 18, 5, 5) * 2
    mask = torch.rand(2, 9, 5, 5)
    expected = tv_ops.deform_conv2d(x, offset, w, None, stride=2, padding=1, mask=mask)
    torch.testing.assert_close(deform_conv2d_reference(x, offset, mask, w, None, 2, 1), expected,
                               atol=1e-4, rtol=1e-4)


def test_deform_conv_module_starts_as_a_plain_conv():
    torch.manual_seed(5)
    layer = DeformConv2d(4, 6, stride=2)
    x = torch.randn(1, 4, 11, 12)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, stride=2, padding=1))
    # and gradients reach its offset predictor
    layer(x).square().sum().backward()
    assert layer.offset_conv.weight.grad.abs().sum() > 0


def test_dcn_model_forward_and_initial_equivalence():
    """A DCN model carrying a plain model's weights computes the same thing at initialisation
    (zero offsets, mask 1); it runs on any size, also where stage 5 is one pixel wide."""
    torch.manual_seed(6)
    plain = DBNet(ModelConfig(arch="resnet18"))
    dcn = DBNet(ModelConfig(arch="resnet18", dcn=True))
    for name, m in dcn.named_modules():
        if isinstance(m, DeformConv2d):
            assert m.offset_conv.weight.abs().max() == 0, name
    result = dcn.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all("offset_conv" in k for k in result.missing_keys)
    plain.eval()
    dcn.eval()
    with torch.no_grad():
        for size in ((70, 45), (32, 64)):
            x = torch.randn(1, 3, *size)
            a, b = plain(x, with_thresh=True), dcn(x, with_thresh=True)
            assert b["prob"].shape == (1, 1, *size)
            torch.testing.assert_close(b["prob"], a["prob"], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(b["thresh"], a["thresh"], atol=1e-4, rtol=1e-4)
    dcn.train()
    with torch.no_grad():  # the residual branch's last BN starts at zero (blocks start as identity)
        dcn.backbone.layer4[0].bn2.weight.fill_(1.0)
    out = dcn(torch.randn(2, 3, 64, 64))
    out["binary"].mean().backward()
    assert dcn.backbone.layer4[0].conv2.offset_conv.weight.grad.abs().sum() > 0


# --- a tiny model overfits one image --------------------------------------------------------------
def test_tiny_model_overfits_one_synthetic_image():
    """ResNet-18 DBNet on one 128x128 image of 3 words: the DB loss falls by more than 90 %
    (about 20 Adam steps; ~0.1 s each on one CPU core)."""
    torch.manual_seed(0)
    polys = random_rects(3, 128, 128, 3, min_height=14, max_height=30, max_aspect=4)
    assert len(polys) >= 2
    x = torch.from_numpy(normalize(render(polys, 128, 128, 3, style="text")))[None]
    batch = _targets(polys, 128, 128)
    model = DBNet(ModelConfig(arch="resnet18"))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = db_loss(model(x), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < 0.05 * losses[0]:
            break
    assert min(losses[-3:]) < 0.1 * losses[0], (losses[0], losses[-5:])
    # the probability map it learned separates text from background
    model.eval()
    with torch.no_grad():
        prob = model(x)["prob"][0, 0]
    gt = batch["gt"][0]
    assert prob[gt == 1].mean() > 0.5 > prob[gt == 0].mean()


# --- DB-MobileNetV3 (PaddleOCR's PP-OCRv3 detector layout) ----------------------------------------
def test_mobilenet_v3_layout_of_pp_ocr_v3():
    """Scale 0.5 without SE: the stage widths and parameter count of PP-OCRv3's detector (its ONNX
    export, probability branch only, has 0.58M parameters in 49 BatchNorm layers)."""
    model = DBNet(ModelConfig("mobilenet_v3", scale=0.5, se=False)).eval()
    assert model.backbone.out_channels == [16, 24, 56, 480]
    prob_branch = count_parameters(model) - count_parameters(model.thresh_head)
    assert prob_branch == 580_161
    bn_in_prob_branch = sum(isinstance(m, torch.nn.BatchNorm2d) for name, m in model.named_modules()
                            if not name.startswith("thresh_head"))
    assert bn_in_prob_branch == 49
    feats = model.backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    out = model(torch.zeros(2, 3, 50, 70), with_thresh=True)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, 1, 50, 70) for k in ("prob", "thresh", "binary")}


@pytest.mark.parametrize("scale, channels", [(0.35, [8, 16, 40, 336]), (1.0, [24, 40, 112, 960])])
def test_mobilenet_v3_widths(scale, channels):
    from dbcli.models.mobilenetv3 import make_divisible

    assert MobileNetV3(scale).out_channels == channels
    assert [make_divisible(v) for v in (12, 20, 36, 60, 92)] == [16, 24, 40, 64, 96]


def test_mobilenet_v3_gradients_reach_every_parameter():
    model = DBNet(ModelConfig("mobilenet_v3", se=True)).train()
    out = model(torch.rand(2, 3, 64, 64))
    (out["prob"].mean() + out["thresh"].mean() + out["binary"].mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_model_config_rejects_unknown_entries():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        ModelConfig("vgg16")
    with pytest.raises(ValueError, match="unknown model setting"):
        ModelConfig.from_dict({"arch": "resnet18", "colour": "blue"})
    with pytest.raises(ValueError, match="dcn"):
        ModelConfig("mobilenet_v3", dcn=True)
    assert ModelConfig.from_dict({"arch": "resnet18", "dcn": False, "k": 50.0}) == ModelConfig()


def test_pretrained_resnet_backbone_into_mobilenet_is_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(ResNet("resnet18").state_dict(), path)
    with pytest.raises(DBNetError, match="takes none"):
        load_backbone_state(DBNet(ModelConfig("mobilenet_v3")), str(path))


def test_weights_files_keep_values_fp16_cannot_hold(tmp_path):
    """fp16 storage must not turn a large BatchNorm variance (PaddleOCR's DB heads keep ~1e8) into inf."""
    from dbcli.weights import build_model, load_weights, save_weights

    torch.manual_seed(0)
    model = DBNet(ModelConfig("mobilenet_v3")).eval()
    with torch.no_grad():
        model.prob_head.body[0].weight.mul_(1e4)
        model.prob_head.body[1].running_var.fill_(1.6e8)
    save_weights(tmp_path / "w.pt", model, half=True)
    stored = load_weights(tmp_path / "w.pt")["state_dict"]
    assert stored["prob_head.body.1.running_var"].dtype == torch.float32
    assert stored["prob_head.body.0.weight"].dtype == torch.float16
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want, got = model(x)["prob"], build_model(load_weights(tmp_path / "w.pt"))(x)["prob"]
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)
