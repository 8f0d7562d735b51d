"""Training targets of DBNet from text polygons (SPEC: "Labels").

Polygons are float arrays ``(K, 2)`` of (x, y) pixel coordinates; ``ignore`` flags mark don't-care
text. All maps are ``(H, W)`` float32. Work is vectorised per polygon: no per-pixel Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import LinearRing

from dbcli.geometry import offset_polygon, polygon_area, polygon_perimeter  # noqa: F401 (public here too)

SHRINK_RATIO = 0.4
THRESH_MIN, THRESH_MAX = 0.3, 0.7
MIN_TEXT_SIZE = 8


@dataclass
class Targets:
    """``gt``/``mask``: shrink map and its loss mask; ``thresh_map``/``thresh_mask``: border targets."""

    gt: np.ndarray
    mask: np.ndarray
    thresh_map: np.ndarray
    thresh_mask: np.ndarray


def shrink_distance(poly: np.ndarray, ratio: float = SHRINK_RATIO) -> float:
    """D = A (1 - r^2) / L (paper eq. 7)."""
    perimeter = polygon_perimeter(poly)
    if perimeter <= 0:
        return 0.0
    return abs(polygon_area(poly)) * (1.0 - ratio * ratio) / perimeter


def short_side(poly: np.ndarray) -> float:
    """Shorter side of the minimum-area rectangle (the authors use the axis-aligned box; for rotated
    words the rotated box is the honest text height, so we use it)."""
    (_, _), (w, h), _ = cv2.minAreaRect(poly.astype(np.float32))
    return float(min(w, h))


def shrink_targets(polygons: list[np.ndarray], ignore: list[bool], height: int, width: int,
                   shrink_ratio: float = SHRINK_RATIO, min_text_size: float = MIN_TEXT_SIZE
                   ) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Probability target G_s and its mask.

    Returns ``(gt, mask, effective_ignore)``: ``gt`` is 1 inside the shrunk polygons; ``mask`` is 0
    over don't-care, degenerate, too-small or vanishing polygons (and 1 elsewhere);
    ``effective_ignore`` tells which polygons ended up excluded.
    """
    gt = np.zeros((height, width), np.float32)
    mask = np.ones((height, width), np.float32)
    effective = []
    for poly, ign in zip(polygons, ignore):
        poly = np.asarray(poly, np.float64).reshape(-1, 2)
        bad = (ign or len(poly) < 3 or abs(polygon_area(poly)) < 1.0 or short_side(poly) < min_text_size
               or not LinearRing(poly).is_simple)  # self-intersecting: area and shrink are meaningless
        pieces = [] if bad else offset_polygon(poly, -shrink_distance(poly, shrink_ratio))
        if not pieces:
            cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 0.0) if len(poly) >= 3 else None
            effective.append(True)
            continue
        cv2.fillPoly(gt, [np.round(p).astype(np.int32) for p in pieces], 1.0)
        effective.append(False)
    return gt, mask, effective


def segment_distances(xs: np.ndarray, ys: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact distance from grid points to the nearest edge of a closed polygon.

    xs ``(W,)`` and ys ``(H,)`` are pixel coordinates; returns ``(H, W)``. (The authors' code uses a
    law-of-cosines approximation; SPEC allows the exact point-to-segment distance.)
    """
    a = poly  # (K, 2) edge starts
    b = np.concatenate((poly[1:], poly[:1]))  # edge ends (= np.roll(poly, -1, axis=0))
    ab = b - a
    ab_len2 = np.maximum((ab ** 2).sum(1), 1e-12)  # (K,)
    px = xs[None, None, :] - a[:, 0, None, None]  # (K, 1, W)
    py = ys[None, :, None] - a[:, 1, None, None]  # (K, H, 1)
    t = np.clip((px * ab[:, 0, None, None] + py * ab[:, 1, None, None]) / ab_len2[:, None, None], 0, 1)
    dx = px - t * ab[:, 0, None, None]
    dy = py - t * ab[:, 1, None, None]
    return np.sqrt(dx * dx + dy * dy).min(axis=0)


_SMALL_BORDER_WORK = 8192  # pixels x edges under which one (K, H, W) pass beats per-edge windows


def _border_values(poly: np.ndarray, distance: float, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``clip(1 - segment_distances(x0..x1, y0..y1, poly) / distance, 0, 1)`` as float32, bit for bit,
    but each edge's distance is evaluated only on the pixels that can be within ``distance`` of it
    (the edge's bounding box grown by ``distance``): farther pixels get 0 either way. The same
    float64 arithmetic per pixel as ``segment_distances``; the minimum is taken over squared
    distances (sqrt is monotonic, so min(sqrt) = sqrt(min)), in place, one edge at a time.
    Small boxes take ``segment_distances`` itself: one vectorised pass, fewer numpy calls.
    """
    if (x1 - x0 + 1) * (y1 - y0 + 1) * len(poly) <= _SMALL_BORDER_WORK:
        dist = segment_distances(np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64),
                                 poly)
        return np.clip(1.0 - dist / distance, 0.0, 1.0).astype(np.float32)
    d2 = np.full((y1 - y0 + 1, x1 - x0 + 1), np.inf)
    a = poly
    ab = np.concatenate((poly[1:], poly[:1])) - a
    ab_len2 = np.maximum((ab ** 2).sum(1), 1e-12)
    lo = np.floor(np.minimum(a, a + ab) - distance).astype(np.int64).tolist()
    hi = np.ceil(np.maximum(a, a + ab) + distance).astype(np.int64).tolist()
    for (ax, ay), (abx, aby), len2, (lx, ly), (hx, hy) in zip(a.tolist(), ab.tolist(), ab_len2.tolist(), lo, hi):
        ex0, ex1, ey0, ey1 = max(lx, x0), min(hx, x1), max(ly, y0), min(hy, y1)
        if ex1 < ex0 or ey1 < ey0:
            continue
        px = np.arange(ex0, ex1 + 1, dtype=np.float64) - ax  # (W',)
        py = (np.arange(ey0, ey1 + 1, dtype=np.float64) - ay)[:, None]  # (H', 1)
        t = (px * abx) + (py * aby)
        t /= len2
        np.clip(t, 0, 1, out=t)
        dx = px - t * abx
        dy = py - t * aby
        dx *= dx
        dy *= dy
        dx += dy
        sub = d2[ey0 - y0:ey1 - y0 + 1, ex0 - x0:ex1 - x0 + 1]
        np.minimum(sub, dx, out=sub)
    value = np.sqrt(d2, out=d2)
    value /= distance
    np.subtract(1.0, value, out=value)
    np.clip(value, 0.0, 1.0, out=value)
    return value.astype(np.float32)


def threshold_targets(polygons: list[np.ndarray], ignore: list[bool], height: int, width: int,
                      shrink_ratio: float = SHRINK_RATIO, thresh_min: float = THRESH_MIN,
                      thresh_max: float = THRESH_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Threshold target and mask (SPEC: dilate by D to G_d; 1 - dist/D in G_d's box, max over
    polygons, scaled to [thresh_min, thresh_max]; mask = union of the G_d regions).
    Don't-care polygons contribute nothing, as in the authors' code."""
    canvas = np.zeros((height, width), np.float32)
    thresh_mask = np.zeros((height, width), np.float32)
    for poly, ign in zip(polygons, ignore):
        poly = np.asarray(poly, np.float64).reshape(-1, 2)
        if ign or len(poly) < 3:
            continue
        distance = shrink_distance(poly, shrink_ratio)
        if distance <= 0:
            continue
        pieces = offset_polygon(poly, distance)
        if not pieces:
            continue
        dilated = max(pieces, key=lambda p: abs(polygon_area(p)))
        cv2.fillPoly(thresh_mask, [np.round(dilated).astype(np.int32)], 1.0)
        x0, y0 = np.floor(dilated.min(0)).astype(int)
        x1, y1 = np.ceil(dilated.max(0)).astype(int)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if cx1 < cx0 or cy1 < cy0:
            continue
        value = _border_values(poly, distance, cx0, cy0, cx1, cy1)
        region = canvas[cy0:cy1 + 1, cx0:cx1 + 1]
        np.maximum(region, value, out=region)
    canvas *= thresh_max - thresh_min  # in place: the same float32 values as canvas * ... + ...
    canvas += thresh_min
    return canvas, thresh_mask


def make_targets(polygons: list[np.ndarray], ignore: list[bool], height: int, width: int,
                 shrink_ratio: float = SHRINK_RATIO, min_text_size: float = MIN_TEXT_SIZE,
                 thresh_min: float = THRESH_MIN, thresh_max: float = THRESH_MAX) -> Targets:
    """All four maps for one image of ``height`` x ``width`` pixels."""
    gt, mask, effective = shrink_targets(polygons, ignore, height, width, shrink_ratio, min_text_size)
    thresh_map, thresh_mask = threshold_targets(polygons, effective, height, width, shrink_ratio,
                                                thresh_min, thresh_max)
    return Targets(gt, mask, thresh_map, thresh_mask)
