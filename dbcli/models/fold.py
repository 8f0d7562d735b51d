"""BatchNorm folding: each eval-mode BatchNorm2d that follows a conv merged into that conv.

Used by inference (``dbcli.backends.torch_backend.TorchBackend``) and by ``dbnet export``: the same inference
graph either way, equal to the unfolded model within float rounding, and faster.
"""

from __future__ import annotations

import torch
from torch import nn


def _fold_pair(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """conv -> bn (eval statistics) becomes one conv with bias; works for Conv2d, ConvTranspose2d and
    DeformConv2d (any module with ``weight`` and optional ``bias`` whose output channels are BN's)."""
    weight: torch.Tensor = conv.weight  # type: ignore[assignment]  # a conv's weight, not a sub-module
    running_mean, running_var = bn.running_mean, bn.running_var
    if running_mean is None or running_var is None:
        raise ValueError("folding a BatchNorm2d needs its running statistics (track_running_stats=True)")
    scale = running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if isinstance(conv, nn.ConvTranspose2d):
        if conv.groups != 1:
            raise ValueError("folding BN into a grouped transposed conv is not supported")
        weight.mul_(scale.view(1, -1, 1, 1))  # (in, out, kh, kw)
    else:
        weight.mul_(scale.view(-1, *([1] * (weight.dim() - 1))))  # (out, in/groups, kh, kw)
    bias: torch.Tensor = conv.bias if conv.bias is not None else torch.zeros_like(scale)  # type: ignore[assignment]
    new_bias = bias * scale + shift
    conv.bias = nn.Parameter(new_bias.detach().clone(), requires_grad=False)


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d | nn.ConvTranspose2d) or (
        hasattr(module, "weight") and hasattr(module, "bias") and type(module).__name__ == "DeformConv2d")


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a conv into that conv, in place (eval mode only).

    Pairs are found structurally: consecutive ``(conv, bn)`` children of an ``nn.Sequential``, and
    sibling attributes ``convX``/``bnX`` (the ResNet stem and blocks, whose ``forward`` applies
    ``bnX`` right after ``convX``). Folded BNs become ``nn.Identity``. Returns ``model``.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    for module in list(model.modules()):
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            names = list(children)
            for a, b in zip(names, names[1:]):
                first, second = children[a], children[b]
                if _is_conv(first) and isinstance(second, nn.BatchNorm2d):
                    _fold_pair(first, second)
                    setattr(module, b, nn.Identity())
            continue
        for name, child in children.items():
            if not (name.startswith("bn") and isinstance(child, nn.BatchNorm2d)):
                continue
            conv = children.get("conv" + name[2:])
            if conv is not None and _is_conv(conv):
                _fold_pair(conv, child)
                setattr(module, name, nn.Identity())
    return model


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
