"""The fine-tuning recipe: what ``dbnet train --init-weights FILE`` uses for every option not given.

The paper's defaults (SGD 0.007, batch 16, 640 crops, 1200 epochs) train from scratch; a file that
already detects text needs small, careful steps instead, measured on ``bench/bench_finetune.py``
(figures in the README's "Training" section):

* AdamW, lr 1e-3 after a 50-step linear warm-up, poly decay fitted into ``--time-limit`` (the
  time schedule is the default with a time limit), validation every epoch;
* batch 8 of 512x512 crops (more steps per CPU-minute than 640), each image rescaled around the
  scale it is detected at (``scale_reference``: its shorter side brought to ``--val-short-side``, then
  x0.5-2.0), so the text of a 3000-px scan or a long receipt is trained at the size the detector
  sees it, as the text of a photo is;
* a converted PaddleOCR model has no threshold branch (``dbnet convert`` starts it as a copy of the
  probability branch). A copy of a sharp probability head is saturated (0.1% of ``general``'s
  pixels on ICDAR 2015 lie in (0.05, 0.95)): its gradients vanish (1e-6 at the last bias), the
  binary map ``sigmoid(k (P - T))`` sits at 0.5 and its loss at 0.98 for hundreds of steps while
  pushing the probability branch around. So the branch is reset to a constant map at the
  inference threshold (``reset_thresh_branch``: the binary map starts as P binarised as at
  inference; gradient 0.2), then trained alone for 100 steps, everything else frozen
  (``head_warmup_steps``);
* thresholds picked with the weights (``pick_thresholds``, unless ``--thresh`` / ``--box-thresh``
  were given): every validation sweeps thresh x box_thresh and judges the candidate (the start too)
  at its best pair, and ``weights.pt`` keeps the chosen one's. A map moved from lines to words
  separates neighbouring words only at a higher threshold: judged at the start's 0.3 / 0.6, the
  checkpoint 13 ICDAR 2015 test points above the start scored below it on validation.

Whatever the recipe, a fine-tuning run validates its starting weights before the first step and its
``weights.pt`` is the best of the start and the validated checkpoints (``dbcli.training.validation``).
Torch-free on import.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from dbcli.training.config import TrainConfig

RECIPE: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "warmup_steps": 50,
    "weight_decay": 1e-4,
    "batch_size": 8,
    "crop_size": 512,
    "scale_min": 0.5,
    "scale_max": 2.0,
    "epochs": 100,
    "val_every": 1,
}
HEAD_WARMUP_STEPS = 100  # threshold-branch-only steps for a file whose branch is a copy of P's
HEAD_WARMUP_MAX_SHARE = 0.15  # ... and at most this share of --time-limit


def recipe_notes() -> dict[str, str]:
    """For ``dbnet train --help``: the recipe's value beside the paper's default of each option it
    sets (``--batch-size``: "With --init-weights: 8 (the fine-tuning recipe)")."""
    return {name: f"With --init-weights: {value:g} (the fine-tuning recipe)." if isinstance(value, float)
            else f"With --init-weights: {value} (the fine-tuning recipe)." for name, value in RECIPE.items()}


def default_given(config: TrainConfig) -> frozenset[str]:
    """The settings of ``config`` that differ from ``TrainConfig()``'s defaults: what a caller of the
    Python API is taken to have chosen (the CLI says exactly which options were given)."""
    base = TrainConfig()
    return frozenset(f.name for f in fields(TrainConfig) if getattr(config, f.name) != getattr(base, f.name))


def threshold_branch_is_copy(weights: dict) -> bool:
    """Whether the weights file's threshold head equals its probability head, tensor for tensor (a
    model converted from an inference export, which carries no threshold branch)."""
    import torch

    state = weights.get("state_dict", {})
    pairs = [(k, "thresh_head" + k[len("prob_head"):]) for k in state if k.startswith("prob_head")]
    return bool(pairs) and all(t in state and torch.equal(state[p].float(), state[t].float()) for p, t in pairs)


def apply_recipe(config: TrainConfig, weights: dict | None, given: frozenset[str]) -> TrainConfig:
    """``config`` with the recipe's values for the settings not ``given`` when it fine-tunes
    (``weights``: the ``--init-weights`` file, read) and ``config.recipe`` is not False; the recipe's
    own switches resolved to plain values either way (off without it)."""
    on = weights is not None and config.recipe is not False
    changes: dict[str, Any] = {"recipe": on}
    if on:
        changes.update({k: v for k, v in RECIPE.items() if k not in given})
        copy = threshold_branch_is_copy(weights or {})
        if config.head_warmup_steps is None:
            changes["head_warmup_steps"] = HEAD_WARMUP_STEPS if copy else 0
        if config.reset_thresh_branch is None:
            changes["reset_thresh_branch"] = copy
        if config.scale_reference is None:
            changes["scale_reference"] = config.val_short_side
        if config.pick_thresholds is None:
            changes["pick_thresholds"] = not ({"thresh", "box_thresh"} & set(config.post))
    for name in ("head_warmup_steps", "scale_reference"):
        changes.setdefault(name, getattr(config, name) or 0)
    changes.setdefault("pick_thresholds", bool(config.pick_thresholds))
    changes.setdefault("reset_thresh_branch", bool(config.reset_thresh_branch))
    return replace(config, **changes)


def describe(config: TrainConfig, given: frozenset[str]) -> str:
    """One log line: the recipe's settings this run took (those not given)."""
    taken = [f"{k} {getattr(config, k):g}" if isinstance(getattr(config, k), float) else f"{k} {getattr(config, k)}"
             for k in RECIPE if k not in given]
    extra = [f"head_warmup_steps {config.head_warmup_steps}", f"scale_reference {config.scale_reference}",
             f"reset_thresh_branch {config.reset_thresh_branch}", f"pick_thresholds {config.pick_thresholds}"]
    return "fine-tuning recipe: " + ", ".join(taken + extra) + " (options given on the command line win)"
