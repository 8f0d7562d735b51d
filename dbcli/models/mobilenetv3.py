"""MobileNetV3-large backbone in the layer layout of PaddleOCR's DB detectors (PP-OCRv3 det uses
``scale=0.5`` with SE disabled), so that their weights convert one to one (``dbcli.interop.paddleocr``).

``MobileNetV3.forward`` maps ``(N, 3, H, W)`` to four feature maps at strides 4, 8, 16, 32 with
``out_channels`` channels (16, 24, 56, 480 at scale 0.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# MobileNetV3-large (Howard et al. 2019, table 1): kernel, expansion, out channels, SE, activation,
# stride. Stages end before each stride-2 block after the third, as in PaddleOCR's detector.
LARGE_LAYERS = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 2),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 2),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
)
STEM_CHANNELS = 16
LAST_CHANNELS = 960  # the 1x1 conv that ends the last stage
SCALES = (0.35, 0.5, 0.75, 1.0, 1.25)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """PaddlePaddle's hard sigmoid, clip(0.2 x + 0.5, 0, 1) (torch's ``hardsigmoid`` uses x / 6)."""
    return (0.2 * x + 0.5).clamp_(0.0, 1.0)


class SqueezeExcite(nn.Module):
    """Channel attention: ``x * hard_sigmoid(conv2(relu(conv1(mean(x)))))``, reduction 4."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(x, 1))))
        return x * hard_sigmoid(weight)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
            act: str | None = None) -> nn.Sequential:
    """conv (no bias) + BN (+ ReLU / hard-swish): a Sequential, so ``fold_batchnorm`` finds the pair."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(out_ch)]
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "hardswish":
        layers.append(nn.Hardswish(inplace=True))
    elif act is not None:
        raise ValueError(f"unknown activation {act!r}")
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand, k x k depthwise (stride), optional SE, 1x1 project; identity shortcut when the
    stride is 1 and the channels match."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int, se: bool, act: str):
        super().__init__()
        self.expand = conv_bn(in_ch, mid_ch, 1, act=act)
        self.depthwise = conv_bn(mid_ch, mid_ch, kernel, stride, groups=mid_ch, act=act)
        self.se = SqueezeExcite(mid_ch) if se else nn.Identity()
        self.project = conv_bn(mid_ch, out_ch, 1)
        self.shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.shortcut else out


class MobileNetV3(nn.Module):
    """MobileNetV3-large feature extractor. ``scale``: width multiplier (PP-OCRv3 det: 0.5);
    ``se``: squeeze-excite in the blocks the paper marks (PP-OCR's detectors disable it)."""

    def __init__(self, scale: float = 0.5, se: bool = False):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"unknown MobileNetV3 scale {scale}; choose one of {SCALES}")
        in_ch = make_divisible(STEM_CHANNELS * scale)
        self.stem = conv_bn(3, in_ch, 3, stride=2, act="hardswish")
        stages: list[list[nn.Module]] = [[]]
        self.out_channels: list[int] = []
        for i, (kernel, expansion, out, use_se, act, stride) in enumerate(LARGE_LAYERS):
            if stride == 2 and i > 2:
                self.out_channels.append(in_ch)
                stages.append([])
            out_ch = make_divisible(out * scale)
            stages[-1].append(InvertedResidual(in_ch, make_divisible(expansion * scale), out_ch, kernel,
                                               stride, se and use_se, act))
            in_ch = out_ch
        last = make_divisible(LAST_CHANNELS * scale)
        stages[-1].append(conv_bn(in_ch, last, 1, act="hardswish"))
        self.out_channels.append(last)
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
