"""Feature-pyramid necks: four backbone maps (strides 4, 8, 16, 32) -> one fused map at stride 4.

Both return ``(N, channels, H/4, W/4)``, the levels concatenated coarse-to-fine (P5, P4, P3, P2) as
in the authors' code and PaddleOCR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dbcli.models.mobilenetv3 import SqueezeExcite


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class FPN(nn.Module):
    """DBNet's neck (paper): lateral 1x1 to ``channels``, top-down sum, 3x3 to ``channels / 4``,
    upsample all to stride 4, concatenate."""

    def __init__(self, in_channels: list[int], channels: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1, bias=False) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels // 4, 3, padding=1, bias=False)
                                    for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 1, 0, -1):  # top-down: C5 -> C2
            lat[i - 1] = lat[i - 1] + _upsample_to(lat[i], lat[i - 1])
        outs = [_upsample_to(conv(x), lat[0]) if i else conv(x)
                for i, (conv, x) in enumerate(zip(self.smooth, lat))]
        return torch.cat(outs[::-1], dim=1)


class RSELayer(nn.Module):
    """A conv (no bias) followed by squeeze-excite, with a residual around the SE: ``y + se(y)``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)
        self.se = SqueezeExcite(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.se(y)


class RSEFPN(nn.Module):
    """PaddleOCR's RSE-FPN (PP-OCRv3 det): the FPN with each 1x1 lateral and 3x3 output conv
    followed by a residual squeeze-excite. The convs run in PaddleOCR's order (laterals C5 -> C2,
    then outputs P5 -> P2) so that ``dbcli.interop.paddleocr`` can match layers by execution order."""

    def __init__(self, in_channels: list[int], channels: int = 96):
        super().__init__()
        self.lateral = nn.ModuleList(RSELayer(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(RSELayer(channels, channels // 4, 3) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        last = len(feats) - 1
        lat = [torch.empty(0)] * len(feats)
        for i in range(last, -1, -1):
            lat[i] = self.lateral[i](feats[i])
        for i in range(last, 0, -1):
            lat[i - 1] = lat[i - 1] + _upsample_to(lat[i], lat[i - 1])
        outs = [torch.empty(0)] * len(feats)
        for i in range(last, -1, -1):
            outs[i] = self.smooth[i](lat[i])
        return torch.cat([_upsample_to(o, lat[0]) if i else o for i, o in enumerate(outs)][::-1], dim=1)
