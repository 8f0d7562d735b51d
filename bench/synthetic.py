"""Synthetic, ICDAR-2015-like inputs for the benchmarks and the parity tests (no dataset needed).

- ``prob_map``: a 736x1280 probability map as DBNet outputs it for a 1280x720 street photo at short
  side 736: 10-40 word regions (rotated rectangles, height 8-60 px, median 20, aspect 1.2-15, median 4, a few
  curved),
  blurred edges, peak 0.75-0.99; a few faint regions (peak 0.35-0.55: above ``thresh``, under
  ``box_thresh``), specks smaller than ``min_size`` and low background noise.
- ``crop_polygons``: ~15 text polygons on a 640x640 training crop (quads; optionally curved
  14-point polygons), ~10 % don't-care, a few under the minimum text size.
- ``photo``: a 1280x720 RGB picture with text-like strokes (for the end-to-end bench, JPEG-encoded).
All generators take an ``np.random.Generator`` and are deterministic given it.
"""

from __future__ import annotations

import cv2
import numpy as np


def rotated_rect(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """4 corners (x, y) of a ``w`` x ``h`` rectangle centred at (cx, cy), rotated by ``angle_deg``."""
    return cv2.boxPoints(((cx, cy), (w, h), angle_deg)).astype(np.float64)


def curved_polygon(cx: float, cy: float, length: float, height: float, bend: float, angle_deg: float,
                   points_per_side: int = 7) -> np.ndarray:
    """A text line along a circular arc: ``2 * points_per_side`` points (CTW1500-like), clockwise."""
    t = np.linspace(-0.5, 0.5, points_per_side)
    xs = t * length
    centre = bend * length * (t ** 2 - 0.25)  # parabola through the ends, ``bend`` of the length deep
    slope = np.arctan(2 * bend * length * t / length)
    nx, ny = -np.sin(slope), np.cos(slope)
    top = np.stack([xs - nx * height / 2, centre - ny * height / 2], 1)
    bottom = np.stack([xs + nx * height / 2, centre + ny * height / 2], 1)[::-1]
    poly = np.concatenate([top, bottom])
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return poly @ rot.T + (cx, cy)


def _word_shape(rng: np.random.Generator, width: int, height: int, curved: bool) -> np.ndarray:
    # ICDAR 2015 words at 736: height ~8-60 px (median ~20), aspect ~1.2-15 (median ~4).
    h = float(np.clip(rng.lognormal(np.log(20), 0.45), 8, 60))
    w = min(h * float(np.clip(rng.lognormal(np.log(4), 0.6), 1.2, 15)), width * 0.6)
    cx, cy = rng.uniform(0.05 * width, 0.95 * width), rng.uniform(0.05 * height, 0.95 * height)
    if curved:
        return curved_polygon(cx, cy, w, h, float(rng.uniform(0.1, 0.3)) * rng.choice([-1, 1]),
                              float(rng.normal(0, 10)))
    return rotated_rect(cx, cy, w, h, float(rng.normal(0, 12)))


def prob_map(rng: np.random.Generator, height: int = 736, width: int = 1280, n_regions: int | None = None,
             curved_fraction: float = 0.1) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(map (height, width) float32, word polygons)``; the map is high inside the shrunk words."""
    n = int(rng.integers(10, 41)) if n_regions is None else n_regions
    canvas = np.zeros((height, width), np.float32)
    words = []
    for _ in range(n):
        poly = _word_shape(rng, width, height, bool(rng.random() < curved_fraction))
        words.append(poly)
        # DBNet's P is high on the shrunk text kernel (r = 0.4 shrinks a word to ~60 % of its height).
        centre = poly.mean(0)
        shrunk = centre + (poly - centre) * np.array([0.92, 0.6]) if len(poly) == 4 else \
            centre + (poly - centre) * 0.8
        layer = np.zeros_like(canvas)
        peak = float(rng.uniform(0.75, 0.99)) if rng.random() > 0.15 else float(rng.uniform(0.35, 0.55))
        cv2.fillPoly(layer, [np.round(shrunk).astype(np.int32)], peak)
        np.maximum(canvas, layer, out=canvas)
    for _ in range(int(rng.integers(5, 20))):  # specks: pass thresh but are under min_size
        x, y = int(rng.integers(0, width - 3)), int(rng.integers(0, height - 3))
        canvas[y:y + int(rng.integers(1, 3)), x:x + int(rng.integers(1, 3))] = float(rng.uniform(0.5, 0.9))
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.5)
    canvas += rng.uniform(0.0, 0.04, canvas.shape).astype(np.float32)
    np.clip(canvas, 0.0, 1.0, out=canvas)
    return canvas, words


def crop_polygons(rng: np.random.Generator, size: int = 640, n: int = 15, curved_fraction: float = 0.0,
                  ignore_fraction: float = 0.1, integer: bool = False) -> tuple[list[np.ndarray], list[bool]]:
    """Polygons of one training crop (after the random rescale: heights 4-90 px), inside the crop."""
    polys, ignore = [], []
    while len(polys) < n:
        h = float(rng.choice([rng.uniform(4, 8), rng.uniform(8, 90)], p=[0.1, 0.9]))
        w = min(h * float(rng.uniform(1.5, 10)), size * 0.8)
        cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h, size - h)
        if rng.random() < curved_fraction:
            poly = curved_polygon(cx, cy, w, h, float(rng.uniform(0.05, 0.25)), float(rng.normal(0, 8)))
        else:
            poly = rotated_rect(cx, cy, w, h, float(rng.uniform(-10, 10)))
        if poly.min() < 0 or poly.max() > size - 1:
            continue
        polys.append(np.round(poly) if integer else poly)
        ignore.append(bool(rng.random() < ignore_fraction))
    return polys, ignore


def photo(rng: np.random.Generator, height: int = 720, width: int = 1280) -> tuple[np.ndarray, list[np.ndarray]]:
    """A street-photo-like RGB image (gradients, blobs, noise) with dark/light text-like strokes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 200, 3).astype(np.float32)
    grad = rng.uniform(-60, 60, (2, 3)).astype(np.float32)
    image = base + (xx[..., None] / width) * grad[0] + (yy[..., None] / height) * grad[1]
    for _ in range(int(rng.integers(4, 10))):  # large blobs
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, c, int(rng.integers(40, 250)), rng.uniform(0, 255, 3).tolist(), -1)
    words = []
    for _ in range(int(rng.integers(10, 30))):
        poly = _word_shape(rng, width, height, False)
        words.append(poly)
        colour = rng.uniform(0, 255, 3).tolist()
        (cx, cy), (w, h), ang = cv2.minAreaRect(poly.astype(np.float32))
        n_chars = max(2, int(max(w, h) / max(min(w, h), 1) * 1.2))
        for k in range(n_chars):  # glyph-like strokes along the word
            t = (k + 0.5) / n_chars - 0.5
            a = np.deg2rad(ang if w >= h else ang + 90)
            length = max(w, h)
            px, py = cx + np.cos(a) * t * length, cy + np.sin(a) * t * length
            cv2.ellipse(image, (int(px), int(py)), (max(1, int(length / n_chars / 3)), max(1, int(min(w, h) / 2.5))),
                        float(np.rad2deg(a)), 0, 360, colour, max(1, int(min(w, h) / 8)))
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), words
