"""The DB head (probability or threshold map) on the neck's fused stride-4 map."""

from __future__ import annotations

import torch
from torch import nn


class DBHead(nn.Module):
    """conv3x3 + BN + ReLU, two stride-2 transposed convs, sigmoid: ``(N, in_ch, h, w)`` ->
    ``(N, 1, 4h, 4w)`` in [0, 1]. ``mid`` is ``in_ch / 4`` in the paper (256 -> 64) and in PP-OCR
    (96 -> 24)."""

    def __init__(self, in_ch: int = 256, mid: int = 64, prior_bias: float = 0.0):
        super().__init__()
        last = nn.ConvTranspose2d(mid, 1, 2, stride=2)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 2, stride=2), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            last)
        nn.init.constant_(last.bias, prior_bias)  # type: ignore[arg-type]  # bias=True above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))
