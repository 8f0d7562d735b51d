"""Fine-tuning's own steps, wired in by ``dbcli.training.loop``: the threshold branch's start
(``reset_thresh_branch``) and warm-up (``set_head_warmup``), the thresholds each candidate is judged
at on the validation split (``pick_thresholds``) and the final choice between the start and the
checkpoints (``selection_message``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from dbcli.data.sample import Sample
from dbcli.models import DBNet
from dbcli.postprocess.boxes import PostConfig
from dbcli.training.selection import hmean_se, image_counts, paired_difference_se

HEAD = "thresh_head."
THRESH_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
BOX_THRESH_GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


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


def pick_thresholds(model: DBNet, samples: Sequence[Sample], images: Sequence[np.ndarray] | None,
                    device: torch.device, short_side: int, post: PostConfig, amp_dtype) -> dict:
    """Sweep thresh x box_thresh (``THRESH_GRID`` x ``BOX_THRESH_GRID``, plus ``post``'s own pair) on
    the validation ``samples`` with the network run once per image; returns the sweep's best row
    (``thresh``, ``box_thresh``, ``hmean``, ...) and the row at ``post``'s pair under ``"current"``,
    each with ``image_counts`` (ground truth, detections, matched per image: see
    ``dbcli.training.selection``)."""
    from dbcli.backends.torch_backend import ModuleBackend
    from dbcli.engine.settings import Settings
    from dbcli.evaluation.scoring import iter_prob_maps
    from dbcli.evaluation.sweep import sweep_maps

    threshes = sorted({*THRESH_GRID, post.thresh})
    box_threshes = sorted({*BOX_THRESH_GRID, post.box_thresh})
    model.eval()
    try:
        maps = iter_prob_maps(samples, ModuleBackend(model, device, amp_dtype), images=images,
                              settings=Settings(short_side=short_side, post=post))
        result = sweep_maps(((s.polygons, s.ignore, prob, w, h) for s, prob, _, _, (h, w) in maps),
                            box_threshes=box_threshes, threshes=threshes, post=post)
    finally:
        model.train()
    def with_counts(row: dict) -> dict:
        return {**row, "image_counts": image_counts(result.matches[(row["thresh"], row["box_thresh"])]).tolist()}

    current = next(r for r in result.rows if r["thresh"] == post.thresh and r["box_thresh"] == post.box_thresh)
    best = result.best if result.best["hmean"] > current["hmean"] else current  # ties: keep the run's pair
    return {**with_counts(best), "current": with_counts(current), "seconds": result.seconds}


def picked_post(post: PostConfig, picked: dict) -> PostConfig:
    return replace(post, thresh=float(picked["thresh"]), box_thresh=float(picked["box_thresh"]))


def selection_message(selection: dict) -> str:
    """One line: which weights ``weights.pt`` holds and why. ``selection``: ``{"start": {...},
    "best": {...}, "checkpoint": {...}}``, each with ``hmean``, ``label`` and per-image ``counts``."""
    start, best, checkpoint = selection["start"], selection["best"], selection.get("checkpoint")
    start_counts = np.asarray(start["counts"], np.int64).reshape(-1, 3)
    se = hmean_se(start_counts)
    how = "; each at its best thresholds on the validation split" if "thresholds" in start else ""
    return _which_message(start, best, checkpoint, start_counts, se) + how


def _which_message(start: dict, best: dict, checkpoint: dict | None, start_counts: np.ndarray, se: float) -> str:
    if best["label"] == "the start":
        if checkpoint is None:
            return f"weights.pt = the start (val hmean {start['hmean']:.3f} +- {se:.3f}): no checkpoint was validated"
        diff_se = paired_difference_se(start_counts, np.asarray(checkpoint["counts"], np.int64).reshape(-1, 3))
        return (f"weights.pt = the start (val hmean {start['hmean']:.3f} +- {se:.3f}): no checkpoint beat it "
                f"(best: {checkpoint['label']}, {checkpoint['hmean']:.3f}, "
                f"{checkpoint['hmean'] - start['hmean']:+.3f} +- {diff_se:.3f})")
    diff_se = paired_difference_se(start_counts, np.asarray(best["counts"], np.int64).reshape(-1, 3))
    return (f"weights.pt = {best['label']} (val hmean {best['hmean']:.3f}; the start {start['hmean']:.3f} +- "
            f"{se:.3f}; difference {best['hmean'] - start['hmean']:+.3f} +- {diff_se:.3f}, paired bootstrap)")
