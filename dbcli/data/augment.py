"""Training augmentation (SPEC: authors' ICDAR 2015 config).

Horizontal flip (p = 0.5), rotation uniform in [-10, 10] degrees, one random rescale factor keeping
the aspect ratio (relative to the detection scale with ``reference_short_side``), then a random crop
that only cuts through text-free rows and columns, scaled to fit
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
    # > 0: the rescale factor is drawn relative to the scale the image is detected at (its shorter
    # side brought to this many pixels), not to the image as stored
    reference_short_side: int = 0


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


def _affine(a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])


def augment(image: np.ndarray, polygons: list[np.ndarray], ignore: list[bool], rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()):
    """Full training augmentation: returns ``(crop (S, S, 3) uint8, polygons, ignore)``.

    Flip, rotation (canvas enlarged so nothing is cut), rescale and crop-and-fit are composed into
    ONE affine map and applied with a single ``cv2.warpAffine`` straight into the output canvas: the
    same geometry as applying them one by one, at a fraction of the cost (no full-size intermediate
    images). Strong shrinking (< 0.5x) is pre-filtered with an area resize to avoid aliasing.
    """
    polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]
    h, w = image.shape[:2]
    detect_scale = config.reference_short_side / min(h, w) if config.reference_short_side > 0 else 1.0
    matrix = np.eye(3)
    if rng.random() < config.flip_prob:  # pixel index i -> w - 1 - i
        matrix = _affine(-1, 0, w - 1, 0, 1, 0) @ matrix
        polygons = [p[::-1] for p in polygons]  # keep each polygon's orientation
    if config.max_angle > 0:
        angle = float(rng.uniform(-config.max_angle, config.max_angle))
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
        new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
        rot[0, 2] += (new_w - w) / 2.0
        rot[1, 2] += (new_h - h) / 2.0
        matrix = np.vstack([rot, [0.0, 0.0, 1.0]]) @ matrix
        w, h = new_w, new_h
    lo, hi = config.scale_range
    factor = float(rng.uniform(lo, hi)) * detect_scale
    new_w, new_h = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    matrix = _affine(new_w / w, 0, 0, 0, new_h / h, 0) @ matrix
    w, h = new_w, new_h
    polygons = [p @ matrix[:2, :2].T + matrix[:2, 2] for p in polygons]

    x, y, cw, ch = choose_crop(h, w, polygons, config, rng)
    size = config.crop_size
    fit = min(size / cw, size / ch)
    out_w, out_h = max(1, min(size, int(round(cw * fit)))), max(1, min(size, int(round(ch * fit))))
    to_canvas = _affine(fit, 0, -x * fit, 0, fit, -y * fit)
    matrix = to_canvas @ matrix

    total_scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    source = image
    if total_scale < 0.5:  # area-filter first, then warp the smaller image
        pre = total_scale * 1.25
        source = cv2.resize(image, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        sy, sx = source.shape[0] / image.shape[0], source.shape[1] / image.shape[1]
        matrix = matrix @ _affine(1 / sx, 0, 0, 0, 1 / sy, 0)
    canvas = cv2.warpAffine(source, matrix[:2], (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    canvas[out_h:] = 0  # the crop is pasted at the top-left; the rest of the canvas is zero
    canvas[:, out_w:] = 0

    kept_polys, kept_ignore = [], []
    for p, ign in zip(polygons, ignore):
        if p[:, 0].max() < x or p[:, 0].min() > x + cw or p[:, 1].max() < y or p[:, 1].min() > y + ch:
            continue  # entirely outside the crop
        kept_polys.append(p @ to_canvas[:2, :2].T + to_canvas[:2, 2])
        kept_ignore.append(ign)
    return canvas, kept_polys, kept_ignore
