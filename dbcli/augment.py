"""Training augmentation (SPEC: authors' ICDAR 2015 config).

Horizontal flip (p = 0.5), rotation uniform in [-10, 10] degrees, one random rescale factor keeping
the aspect ratio, then a random crop that only cuts through text-free rows and columns, scaled to fit
and pasted at the top-left of a zero ``crop_size`` x ``crop_size`` canvas. Images are ``(H, W, 3)``
uint8; polygons ``(K, 2)`` float (x, y) pixels. Pure functions of an explicit ``np.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    crop_size: int = 640
    scale_range: tuple[float, float] = (0.5, 3.0)
    max_angle: float = 10.0
    flip_prob: float = 0.5
    max_tries: int = 10
    min_crop_side_ratio: float = 0.1


def flip_horizontal(image, polygons):
    w = image.shape[1]
    flipped = []
    for p in polygons:
        q = p.copy()
        q[:, 0] = w - q[:, 0]
        flipped.append(q[::-1].copy())  # keep the point order's orientation
    return np.ascontiguousarray(image[:, ::-1]), flipped


def rotate(image, polygons, angle: float):
    """Rotate by ``angle`` degrees about the centre, enlarging the canvas so nothing is cut."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += (new_w - w) / 2.0
    matrix[1, 2] += (new_h - h) / 2.0
    rotated = cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    polys = [p @ matrix[:, :2].T + matrix[:, 2] for p in polygons]
    return rotated, polys


def rescale(image, polygons, factor: float):
    h, w = image.shape[:2]
    new_w, new_h = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp), [p * (new_w / w, new_h / h) for p in polygons]


def _free_runs(occupied: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive free indices."""
    free = np.flatnonzero(occupied == 0)
    if len(free) == 0:
        return []
    breaks = np.flatnonzero(np.diff(free) != 1) + 1
    return np.split(free, breaks)


def _select_span(runs: list[np.ndarray], size: int, rng: np.random.Generator) -> tuple[int, int]:
    if len(runs) > 1:  # ends in two different free runs (the authors' region-wise selection)
        a, b = sorted(rng.choice(len(runs), 2, replace=False))
        lo, hi = int(rng.choice(runs[a])), int(rng.choice(runs[b]))
    else:
        lo, hi = sorted(int(v) for v in rng.choice(runs[0], 2))
    return int(np.clip(lo, 0, size - 1)), int(np.clip(hi, 0, size - 1))


def choose_crop(height: int, width: int, polygons, config: AugmentConfig, rng: np.random.Generator
                ) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of a crop whose borders avoid text and which holds at least one polygon."""
    rows, cols = np.zeros(height, np.int8), np.zeros(width, np.int8)
    for p in polygons:
        x0, y0 = np.clip(np.round(p.min(0)).astype(int), 0, [width - 1, height - 1])
        x1, y1 = np.clip(np.round(p.max(0)).astype(int), 0, [width - 1, height - 1])
        cols[x0:x1 + 1] = 1
        rows[y0:y1 + 1] = 1
    row_runs, col_runs = _free_runs(rows), _free_runs(cols)
    if not row_runs or not col_runs or not polygons:
        return 0, 0, width, height
    for _ in range(config.max_tries):
        x0, x1 = _select_span(col_runs, width, rng)
        y0, y1 = _select_span(row_runs, height, rng)
        if x1 - x0 < config.min_crop_side_ratio * width or y1 - y0 < config.min_crop_side_ratio * height:
            continue
        for p in polygons:
            if p[:, 0].min() >= x0 and p[:, 0].max() <= x1 and p[:, 1].min() >= y0 and p[:, 1].max() <= y1:
                return x0, y0, x1 - x0, y1 - y0
    return 0, 0, width, height


def crop_to_canvas(image, polygons, ignore, box, crop_size: int):
    """Crop ``box``, scale it to fit ``crop_size`` and paste at the top-left of a zero canvas.
    Polygons entirely outside the crop are dropped."""
    x, y, w, h = box
    scale = min(crop_size / w, crop_size / h)
    new_w, new_h = max(1, min(crop_size, int(round(w * scale)))), max(1, min(crop_size, int(round(h * scale))))
    canvas = np.zeros((crop_size, crop_size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image[y:y + h, x:x + w], (new_w, new_h),
                                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    kept_polys, kept_ignore = [], []
    for p, ign in zip(polygons, ignore):
        if p[:, 0].max() < x or p[:, 0].min() > x + w or p[:, 1].max() < y or p[:, 1].min() > y + h:
            continue
        kept_polys.append((p - (x, y)) * scale)
        kept_ignore.append(ign)
    return canvas, kept_polys, kept_ignore


def augment(image: np.ndarray, polygons: list[np.ndarray], ignore: list[bool], rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()):
    """Full training augmentation: returns ``(crop (S, S, 3) uint8, polygons, ignore)``."""
    polygons = [np.asarray(p, np.float64) for p in polygons]
    if rng.random() < config.flip_prob:
        image, polygons = flip_horizontal(image, polygons)
    if config.max_angle > 0:
        image, polygons = rotate(image, polygons, float(rng.uniform(-config.max_angle, config.max_angle)))
    lo, hi = config.scale_range
    image, polygons = rescale(image, polygons, float(rng.uniform(lo, hi)))
    h, w = image.shape[:2]
    box = choose_crop(h, w, polygons, config, rng)
    return crop_to_canvas(image, polygons, ignore, box, config.crop_size)
