"""Fine-tuning's own steps on the model, wired in by ``dbcli.training.setup`` and
``dbcli.training.loop``: the threshold branch's start (``reset_thresh_branch``) and warm-up
(``set_head_warmup``). The thresholds each candidate is judged at and the choice between the start
and the checkpoints are validation's (``dbcli.training.validation``, ``dbcli.training.selection``)."""

from __future__ import annotations

import math

import torch

from dbcli.models import DBNet

HEAD = "thresh_head."


def set_head_warmup(model: DBNet, on: bool) -> None:
    """``on``: only the threshold head trains (every other parameter's ``requires_grad`` off and its
    modules in eval mode, so BatchNorm statistics stay too); off: the whole model trains."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not on or name.startswith(HEAD))
    model.train()  # (the model's own flag stays on: its forward makes the threshold and binary maps)
    if on:
        for name, child in model.named_children():
            if not HEAD.startswith(name + "."):
                child.eval()


def reset_thresh_branch(model: DBNet, level: float) -> None:
    """Make the threshold head output ``level`` (in (0, 1)) at every pixel: its last transposed conv's
    weights zeroed and its bias set to ``logit(level)``. The binary map ``sigmoid(k (P - T))`` then
    starts as the probability map binarised at ``level``, the inference threshold, instead of the 0.5
    everywhere of a threshold branch that copies the probability branch; the earlier layers of the
    head get gradients again once the first step has moved the zeroed weights."""
    level = min(max(level, 0.01), 0.99)
    last = model.thresh_head.body[-1]
    assert isinstance(last, torch.nn.ConvTranspose2d) and last.bias is not None
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.log(level / (1.0 - level)))
