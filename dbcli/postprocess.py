"""Probability map -> text boxes or polygons (SPEC: "Inference post-processing").

Input: ``prob_map`` ``(h, w)`` float array in [0, 1] for the resized network input. Output: a list of
``Detection`` whose ``points`` ``(K, 2)`` are float (x, y) in the ORIGINAL image's pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

from dbcli.labels import polygon_area, polygon_perimeter


@dataclass(frozen=True)
class PostConfig:
    thresh: float = 0.3  # binarization of P (authors' code; the paper's text says 0.2)
    box_thresh: float = 0.6  # minimum mean probability of a region
    unclip_ratio: float = 1.5  # r' of D' = A' r' / L'
    max_candidates: int = 1000
    min_size: float = 3.0  # minimum short side (pixels of the network input) before unclipping
    polygon: bool = False  # polygons (curved text) instead of 4-point rotated boxes


@dataclass
class Detection:
    points: np.ndarray  # (K, 2) float64, original-image pixels, clockwise from top-left for boxes
    score: float

    def to_dict(self, ndigits: int = 1) -> dict:
        return {"points": [[round(float(x), ndigits), round(float(y), ndigits)] for x, y in self.points],
                "score": round(float(self.score), 4)}


def unclip(points: np.ndarray, unclip_ratio: float) -> np.ndarray | None:
    """Expand a polygon by D' = A' r' / L' with the Vatti algorithm; largest piece or None."""
    perimeter = polygon_perimeter(points)
    if perimeter <= 0:
        return None
    distance = abs(polygon_area(points)) * unclip_ratio / perimeter
    pco = pyclipper.PyclipperOffset()
    pco.AddPath(points.astype(np.int64).tolist() if points.dtype.kind == "i" else
                np.round(points).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    pieces = pco.Execute(distance)
    if not pieces:
        return None
    best = max(pieces, key=lambda p: abs(pyclipper.Area(p)))
    return np.asarray(best, dtype=np.float64).reshape(-1, 2)


def order_box(box: np.ndarray) -> np.ndarray:
    """Order 4 corners clockwise starting at the top-left (as ICDAR ground truth)."""
    box = box[np.argsort(box[:, 0], kind="stable")]
    left, right = box[:2], box[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.stack([tl, tr, br, bl])


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rotated rectangle of points: (4x2 ordered corners, shorter side)."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    return order_box(cv2.boxPoints(rect).astype(np.float64)), float(min(rect[1]))


def region_score(prob_map: np.ndarray, points: np.ndarray) -> float:
    """Mean of ``prob_map`` inside the polygon ``points`` (exact fill, bounding box crop only)."""
    h, w = prob_map.shape
    x0 = int(np.clip(np.floor(points[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(points[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(points[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(points[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    shifted = np.round(points - (x0, y0)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    return float(cv2.mean(prob_map[y0:y1 + 1, x0:x1 + 1], mask)[0])


def boxes_from_prob_map(prob_map: np.ndarray, orig_width: int, orig_height: int,
                        config: PostConfig = PostConfig()) -> list[Detection]:
    """Detections in original-image coordinates from one probability map ``(h, w)``."""
    prob_map = np.ascontiguousarray(prob_map, dtype=np.float32)
    h, w = prob_map.shape
    bitmap = (prob_map > config.thresh).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) > config.max_candidates:
        warnings.warn(f"{len(contours)} candidate regions, only the first {config.max_candidates} are "
                      "kept (raise max_candidates)", stacklevel=2)
        contours = contours[: config.max_candidates]
    scale = np.array([orig_width / w, orig_height / h])
    detections = []
    for contour in contours:
        points = contour.reshape(-1, 2)
        if len(points) < 3:
            continue
        if config.polygon:
            epsilon = 0.002 * cv2.arcLength(contour, True)  # authors' value
            points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
            if len(points) < 4:
                continue
            if min(cv2.minAreaRect(points.astype(np.float32))[1]) < config.min_size:
                continue
            score = region_score(prob_map, points.astype(np.float64))
            if score < config.box_thresh:
                continue
            expanded = unclip(points, config.unclip_ratio)
            if expanded is None or len(expanded) < 3:
                continue
            if min(cv2.minAreaRect(expanded.astype(np.float32))[1]) < config.min_size + 2:
                continue
            out = expanded
        else:
            box, side = mini_box(points)
            if side < config.min_size:
                continue
            score = region_score(prob_map, points.astype(np.float64))
            if score < config.box_thresh:
                continue
            expanded = unclip(box, config.unclip_ratio)
            if expanded is None:
                continue
            out, side = mini_box(expanded)
            if side < config.min_size + 2:
                continue
        out = out * scale
        out[:, 0] = np.clip(out[:, 0], 0, orig_width)
        out[:, 1] = np.clip(out[:, 1], 0, orig_height)
        detections.append(Detection(out, score))
    return detections
