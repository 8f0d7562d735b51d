"""How sure a validation figure is: bootstrap standard errors of the hmean over a split's images, and
the line that says which candidate a fine-tuning run chose and by how much (``selection_message``).

A fine-tuning run compares its starting weights with its checkpoints on the validation split
(``dbcli.training.validation``); with a few dozen images a point of hmean can be noise. The figures here
resample the split's images with replacement (the ICDAR 2015 protocol sums matches, ground truth and
detections over images, so an image is the unit) and say how far the hmean moves. Per-image counts
are ``(N, 3)`` int arrays of (ground truth, detections, matched), as ``ImageMatch`` gives them.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dbcli.evaluation.metrics import ImageMatch

ROUNDS = 1000
NOISY_SE = 0.005  # a standard error above half a point: the split cannot tell 0.5 points apart
FEW_IMAGES = 20  # ... nor can so few images, whatever their bootstrap says


def image_counts(matches: Sequence[ImageMatch]) -> np.ndarray:
    """``(N, 3)`` int64: (ground truth, detections, matched) per image."""
    return np.array([[m.num_gt, m.num_det, m.num_matched] for m in matches], np.int64).reshape(-1, 3)


def _hmeans(sums: np.ndarray) -> np.ndarray:
    """hmean of each row of ``(R, 3)`` summed counts (0 where nothing matched)."""
    gt, det, matched = (sums[:, k].astype(np.float64) for k in range(3))
    precision = np.divide(matched, det, out=np.zeros_like(matched), where=det > 0)
    recall = np.divide(matched, gt, out=np.zeros_like(matched), where=gt > 0)
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def _resamples(n: int, rounds: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def hmean_se(counts: np.ndarray, rounds: int = ROUNDS, seed: int = 0) -> float:
    """Bootstrap standard error of the hmean of ``counts`` (``(N, 3)``); 0 for fewer than 2 images."""
    if len(counts) < 2:
        return 0.0
    picks = _resamples(len(counts), rounds, seed)
    return float(_hmeans(counts[picks].sum(axis=1)).std(ddof=1))


def paired_difference_se(start: np.ndarray, other: np.ndarray, rounds: int = ROUNDS, seed: int = 0) -> float:
    """Bootstrap standard error of hmean(other) - hmean(start) on the SAME images (both ``(N, 3)``, row
    k the same image): smaller than either one's own error, as the images' difficulty cancels."""
    if len(start) < 2 or len(start) != len(other):
        return 0.0
    picks = _resamples(len(start), rounds, seed)
    return float((_hmeans(other[picks].sum(axis=1)) - _hmeans(start[picks].sum(axis=1))).std(ddof=1))


def noise_line(counts: np.ndarray) -> tuple[str, bool]:
    """A log line on the split's noise, and whether it is too noisy to tell 0.5 points apart."""
    se = hmean_se(counts)
    noisy = se > NOISY_SE or len(counts) < FEW_IMAGES
    line = (f"validation split: {len(counts)} images, {int(counts[:, 0].sum()) if len(counts) else 0} text regions; "
            f"hmean standard error {se:.3f} (bootstrap over images)")
    if noisy:
        line = ("warning: " + line + f": differences under ~{max(2 * se, 0.01):.3f} between two models may be "
                "noise (a larger --val-fraction or more labelled images tell smaller ones apart)")
    return line, noisy


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
