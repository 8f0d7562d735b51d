"""DBNet = backbone + neck + probability/threshold heads + differentiable binarization.

Shapes: the model takes a normalised image batch ``(N, 3, H, W)`` (RGB, ImageNet mean/std, see
``dbcli.imaging.normalize``) of any H, W; it pads to a multiple of 32 inside and crops its outputs
back, so every map it returns is ``(N, 1, H, W)``.

Architectures (``ModelConfig.arch``):
- ``resnet18`` / ``resnet34`` / ``resnet50``: the paper's DB-ResNet, FPN neck of 256 channels.
- ``mobilenet_v3``: PaddleOCR's DB-MobileNetV3 (large, width ``scale``), RSE-FPN neck of 96 channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from dbcli.models.heads import DBHead
from dbcli.models.mobilenetv3 import MobileNetV3
from dbcli.models.necks import FPN, RSEFPN
from dbcli.models.resnet import RESNET_ARCHS, ResNet

ARCHS = (*RESNET_ARCHS, "mobilenet_v3")
INPUT_ORDERS = ("rgb", "bgr")
# ImageNet statistics in RGB order, in [0, 1] units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model from a weights file.

    ``scale`` and ``se`` apply to ``mobilenet_v3`` only; ``neck_channels`` 0 means the
    architecture's own (256 for ResNets, 96 for MobileNetV3). ``input_order`` "bgr": the network
    was trained (by PaddleOCR) on BGR images normalised with the RGB-order ImageNet statistics; its
    first layer turns dbnet's RGB input into that, exactly (see ``BgrInput``).
    """

    arch: str = "resnet18"
    dcn: bool = False
    k: float = 50.0  # DB amplifying factor, paper value
    scale: float = 0.5
    se: bool = False
    neck_channels: int = 0
    input_order: str = "rgb"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r} (one of {', '.join(ARCHS)})")
        if self.input_order not in INPUT_ORDERS:
            raise ValueError(f"unknown input_order {self.input_order!r} (rgb or bgr)")
        if self.dcn and self.arch not in RESNET_ARCHS:
            raise ValueError("deformable convolution (dcn) exists for the ResNet backbones only")

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a weights file's ``model`` entry; ``ValueError`` for unknown keys or values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model setting(s) {', '.join(unknown)} (a file from a newer dbnet?)")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def channels(self) -> int:
        """The neck's fused channels."""
        return self.neck_channels or (96 if self.arch == "mobilenet_v3" else 256)


class BgrInput(nn.Module):
    """Fixed per-channel affine map from dbnet's input (RGB, ``(x - mean_rgb) / std_rgb``) to
    PaddleOCR's (BGR pixels, each normalised with the RGB-order statistics: channel 0 = blue with
    mean 0.485 / std 0.229). Buffers, not parameters: training never changes it."""

    scale: torch.Tensor  # (1, 3, 1, 1)
    shift: torch.Tensor  # (1, 3, 1, 1)

    def __init__(self):
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        flipped_mean, flipped_std = mean.flip(0), std.flip(0)  # the RGB statistics of channel 2 - j
        self.register_buffer("scale", (flipped_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((flipped_mean - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * self.scale + self.shift


class DBNet(nn.Module):
    """Backbone + neck + probability/threshold heads + differentiable binarization.

    ``forward(images)`` with images ``(N, 3, H, W)`` returns a dict of ``(N, 1, H, W)`` maps in [0, 1]:
    ``prob`` always; ``thresh`` and ``binary`` too in training mode or when ``with_thresh=True``.
    """

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        self.input_map = BgrInput() if config.input_order == "bgr" else nn.Identity()
        channels = config.channels
        if config.arch == "mobilenet_v3":
            self.backbone: nn.Module = MobileNetV3(config.scale, config.se)
            self.neck: nn.Module = RSEFPN(self.backbone.out_channels, channels)
        else:
            self.backbone = ResNet(config.arch, dcn=config.dcn)
            self.neck = FPN(self.backbone.out_channels, channels)
        # Prior so the initial P is ~0.01 (few text pixels): stabilises early training from scratch.
        self.prob_head = DBHead(channels, channels // 4, prior_bias=-math.log(99.0))
        self.thresh_head = DBHead(channels, channels // 4)
        for module in (self.neck, self.prob_head, self.thresh_head):
            for m in module.modules():
                # Authors' init: kaiming for convs; transposed convs keep PyTorch's default (kaiming's
                # fan-in is wrong for their (in, out, k, k) weights and saturates the sigmoid).
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.constant_(m.bias, 1e-4)

    def step_function(self, prob: torch.Tensor, thresh: torch.Tensor) -> torch.Tensor:
        """DB: B = 1 / (1 + exp(-k (P - T)))."""
        return torch.sigmoid(self.config.k * (prob - thresh))

    def forward(self, images: torch.Tensor, with_thresh: bool | None = None) -> dict[str, torch.Tensor]:
        h, w = images.shape[-2:]
        pad_h, pad_w = (-h) % 32, (-w) % 32
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        fused = self.neck(self.backbone(self.input_map(images)))
        prob = self.prob_head(fused)[..., :h, :w]
        out = {"prob": prob}
        if self.training if with_thresh is None else with_thresh:
            thresh = self.thresh_head(fused)[..., :h, :w]
            out["thresh"] = thresh
            out["binary"] = self.step_function(prob, thresh)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
