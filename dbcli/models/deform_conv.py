"""Modulated deformable convolution (DCNv2, Zhu et al. 2019).

Uses ``torchvision.ops.deform_conv2d`` when torchvision is importable (it is not a dependency);
otherwise a pure-PyTorch implementation built on ``grid_sample`` that computes the same thing.
The module keeps ``weight`` under the usual name so a torchvision ResNet's ``conv2.weight`` loads
into it; the offset/mask predictor is ``offset_conv`` (zero-initialised: starts as a plain conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:  # optional fast path; torchvision is never required
    from torchvision.ops import deform_conv2d as _tv_deform_conv2d
except Exception:  # ImportError, or a torchvision build that does not match torch
    _tv_deform_conv2d = None


def deform_conv2d_reference(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                            weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                            padding: int, dilation: int = 1) -> torch.Tensor:
    """Pure-PyTorch DCNv2.

    x ``(N, C, H, W)``; offset ``(N, 2*K, Ho, Wo)`` as (dy, dx) pairs per kernel tap (torchvision's
    layout); mask ``(N, K, Ho, Wo)``; weight ``(Cout, C, kh, kw)``; returns ``(N, Cout, Ho, Wo)``.
    Samples outside the input read zero, as in the CUDA kernels.
    """
    n, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    dtype, device = x.dtype, x.device
    ys = torch.arange(ho, device=device, dtype=dtype) * stride - padding
    xs = torch.arange(wo, device=device, dtype=dtype) * stride - padding
    ky, kx = torch.meshgrid(torch.arange(kh, device=device, dtype=dtype) * dilation,
                            torch.arange(kw, device=device, dtype=dtype) * dilation, indexing="ij")
    off = offset.view(n, k, 2, ho, wo)
    # Absolute sampling positions (N, K, Ho, Wo) in input pixels.
    py = ys.view(1, 1, ho, 1) + ky.reshape(1, k, 1, 1) + off[:, :, 0]
    px = xs.view(1, 1, 1, wo) + kx.reshape(1, k, 1, 1) + off[:, :, 1]
    # grid_sample with align_corners=False: pixel p sits at (2p + 1) / size - 1. (align_corners=True
    # cannot express a 1-pixel-wide input: every position maps onto its single pixel.)
    gx = (2.0 * px + 1.0) / w - 1.0
    gy = (2.0 * py + 1.0) / h - 1.0
    grid = torch.stack((gx, gy), dim=-1).view(n, k * ho, wo, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(n, c, k, ho, wo) * mask.view(n, 1, k, ho, wo)
    cols = sampled.view(n, c * k, ho * wo)
    out = torch.matmul(weight.view(c_out, c * k), cols).view(n, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """3x3 modulated deformable conv with its own offset/mask predictor."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, bias: bool = False):
        super().__init__()
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        taps = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(in_ch, 3 * taps, kernel_size, stride=stride, padding=padding)
        self.reset_offsets()

    def reset_offsets(self) -> None:
        """Zero the offset/mask predictor (offsets 0, mask 1: a plain conv). A parent module that
        re-initialises every ``nn.Conv2d`` must call this afterwards."""
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.kernel_size * self.kernel_size
        om = self.offset_conv(x)
        offset, mask = om[:, : 2 * taps], torch.sigmoid(om[:, 2 * taps:]) * 2.0
        # mask*2 so that a zero-initialised predictor gives mask 1: a plain conv at start.
        if _tv_deform_conv2d is not None and not torch.jit.is_scripting():
            return _tv_deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                                     padding=self.padding, mask=mask)
        return deform_conv2d_reference(x, offset, mask, self.weight, self.bias, self.stride, self.padding)
