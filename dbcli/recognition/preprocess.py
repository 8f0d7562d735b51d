"""Crops into recogniser input: colour order, height, width bucketing and padding, normalisation.

PaddleOCR's recognisers and direction classifier were trained on BGR images scaled to ``x / 127.5 - 1``,
resized to a fixed height keeping the aspect ratio, and right-padded with zeros to a common width.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dbcli.errors import DBNetError

REC_HEIGHT = 48  # px: PP-OCRv6 rec input height
MIN_SIDE = 2  # px: a crop thinner than this reads as ""


def as_rgb(crop: np.ndarray, index: int) -> np.ndarray:
    """``crop`` as a ``(h, w, 3)`` uint8 RGB array: accepts ``(h, w)`` grey, ``(h, w, 1)``, ``(h, w, 3)``
    RGB and ``(h, w, 4)`` RGBA; floats in [0, 1] or [0, 255] are not guessed at (uint8 only)."""
    a = np.asarray(crop)
    if a.dtype != np.uint8:
        raise DBNetError(f"crop {index}: expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DBNetError(f"crop {index}: expected an (h, w, 3) RGB image, got shape {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    return a[:, :, :3]


def is_readable(crop: np.ndarray) -> bool:
    """False for an empty crop, one under ``MIN_SIDE`` px in either side, or one of a single flat colour
    (nothing to read: it reads as ``""`` without running the model)."""
    if crop.shape[0] < MIN_SIDE or crop.shape[1] < MIN_SIDE:
        return False
    return bool(crop.max() != crop.min())


def aspect(crop: np.ndarray) -> float:
    """Width / height of a ``(h, w, ...)`` crop."""
    return crop.shape[1] / crop.shape[0]


def resized_width(crop: np.ndarray, height: int, max_width: int) -> int:
    """The width, >= 1 px, of ``crop`` scaled to ``height`` px keeping its aspect, capped at ``max_width``."""
    return max(1, min(max_width, math.ceil(height * aspect(crop))))


def normalize_batch(crops: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """RGB uint8 crops -> ``(N, 3, height, width)`` float32 BGR in [-1, 1]: each resized to ``height``
    keeping its aspect (up to ``width``), left-aligned, the rest zero (PaddleOCR's padding)."""
    batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        w = resized_width(crop, height, width)
        resized = cv2.resize(np.ascontiguousarray(crop[:, :, ::-1]), (w, height), interpolation=cv2.INTER_LINEAR)
        batch[i, :, :, :w] = resized.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
    return batch


def batch_width(crops: list[np.ndarray], height: int, min_width: int) -> int:
    """The padded width of a batch: the widest crop at ``height`` px (rounded down, as PaddleOCR does),
    at least ``min_width`` px."""
    return max(min_width, max(int(height * aspect(c)) for c in crops))


def buckets(aspects: list[float], batch_size: int, spread: float) -> list[list[int]]:
    """Indices grouped into batches of crops of similar width: sorted by aspect, at most ``batch_size``
    per batch, and a batch closes when the next crop is more than ``spread`` times as wide as its first
    (the padding wasted on the narrow ones stays bounded). Every index appears once."""
    order = sorted(range(len(aspects)), key=lambda i: aspects[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and aspects[i] <= spread * max(aspects[groups[-1][0]], 1e-6):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def split_points(crop: np.ndarray, max_aspect: float) -> list[int]:
    """Columns at which to cut a crop wider than ``max_aspect`` times its height into pieces no wider
    than that: each cut at the column of least ink (darkest-to-lightest contrast lowest) in the last
    third of the allowed span, so cuts fall in the gaps between characters. ``[]`` when no cut is needed."""
    h, w = crop.shape[:2]
    span = int(max_aspect * h)
    if w <= span:
        return []
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ink = np.abs(grey - np.median(grey)).sum(axis=0)  # per column: how far from the background it is
    cuts, start = [], 0
    while w - start > span:
        lo, hi = start + (2 * span) // 3, start + span
        cut = lo + int(np.argmin(ink[lo:hi]))
        cuts.append(cut)
        start = cut
    return cuts


def gap_at(crop: np.ndarray, column: int) -> bool:
    """Whether the blank run around ``column`` is a word gap (wider than a third of the crop height)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ink = np.abs(grey - np.median(grey)).max(axis=0)
    blank = ink < 0.25 * max(float(ink.max()), 1.0)
    left = right = column
    while left > 0 and blank[left - 1]:
        left -= 1
    while right < len(blank) - 1 and blank[right + 1]:
        right += 1
    return bool(blank[column]) and (right - left + 1) > crop.shape[0] / 3
