"""ResNet backbones with torchvision's parameter names (the paper's DB-ResNet-18/50), optionally
with deformable convolution in stages conv3-conv5 (the paper's "+DCN").

``ResNet.forward`` maps ``(N, 3, H, W)`` to C2..C5 at strides 4, 8, 16, 32.
"""

from __future__ import annotations

import torch
from torch import nn

from dbcli.models.deform_conv import DeformConv2d

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50")
_BLOCKS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, deformable: bool = False) -> nn.Module:
    if deformable:
        return DeformConv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None,
                 deformable: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        # The authors' DCN variant makes the second 3x3 conv of each block deformable.
        self.conv2 = _conv3x3(ch, ch, deformable=deformable)
        self.bn2 = nn.BatchNorm2d(ch)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None,
                 deformable: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        # torchvision (ResNet v1.5) puts the stride on the 3x3 conv.
        self.conv2 = _conv3x3(ch, ch, stride=stride, deformable=deformable)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet feature extractor with torchvision's parameter names (no ``fc``).

    ``forward`` returns C2..C5 at strides 4, 8, 16, 32.
    """

    def __init__(self, arch: str = "resnet18", dcn: bool = False):
        super().__init__()
        if arch not in _BLOCKS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(RESNET_ARCHS)}")
        kind, layers = _BLOCKS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.in_ch = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Paper: deformable convolution in stages conv3-conv5 (torchvision's layer2..layer4).
        self.layer1 = self._make_layer(block, 64, layers[0], 1, False)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dcn)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dcn)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dcn)
        self.out_channels = [c * block.expansion for c in (64, 128, 256, 512)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch: trains better from scratch (Goyal et al.).
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, DeformConv2d):
                m.reset_offsets()  # the kaiming loop above also hit its offset_conv (an nn.Conv2d)

    def _make_layer(self, block, ch: int, blocks: int, stride: int, dcn: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_ch != ch * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_ch, ch * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(ch * block.expansion))
        layers = [block(self.in_ch, ch, stride, downsample, dcn)]
        self.in_ch = ch * block.expansion
        layers += [block(self.in_ch, ch, deformable=dcn) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]
