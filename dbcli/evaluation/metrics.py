"""ICDAR 2015 "IoU" evaluation protocol over polygons (SPEC: "Evaluation").

Per image: detections whose area lies more than ``area_precision`` (0.5) inside don't-care ground
truth are dropped; then ground truth and detections are matched one-to-one, greedily in ground-truth
then detection order (as the official script), when IoU > ``iou_threshold`` (0.5). Precision, recall
and hmean come from totals over all images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid


def to_polygon(points) -> Polygon | None:
    """A valid shapely polygon from ``(K, 2)`` points; self-intersections repaired; None if empty."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    poly = Polygon(pts)
    if not poly.is_valid:
        fixed = make_valid(poly)
        parts = [g for g in getattr(fixed, "geoms", [fixed]) if isinstance(g, Polygon)]
        if not parts:
            return None
        poly = max(parts, key=lambda g: g.area)
    return poly if poly.area > 0 else None


def _iou(a: Polygon, b: Polygon) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass
class ImageMatch:
    num_gt: int  # ground truth that counts (not don't-care)
    num_det: int  # detections that count (not dropped as don't-care)
    num_matched: int
    matches: list[tuple[int, int]] = field(default_factory=list)  # (gt index, det index)


def _detections_that_count(dets: list, dont_care: list, area_precision: float) -> list[bool]:
    """Official script: a detection is dropped when more than ``area_precision`` of it lies inside ONE
    don't-care region (areas are not summed over regions, which would double-count overlapping ones)."""
    return [d is not None and not any(d.intersection(g).area / d.area > area_precision for g in dont_care)
            for d in dets]


def _first_match(g: Polygon, dets: list, det_care: list[bool], det_matched: list[bool], iou_threshold: float
                 ) -> int | None:
    """The first free, counting detection whose IoU with ``g`` exceeds ``iou_threshold``, or None."""
    for j, d in enumerate(dets):
        if det_matched[j] or not det_care[j]:
            continue
        if _iou(g, d) > iou_threshold:
            return j
    return None


def evaluate_image(gt_polygons: list, gt_ignore: list[bool], det_polygons: list,
                   iou_threshold: float = 0.5, area_precision: float = 0.5) -> ImageMatch:
    """One image under the ICDAR 2015 protocol: each counting ground-truth region, in order, takes the
    first free counting detection with IoU above ``iou_threshold``."""
    gts = [to_polygon(p) for p in gt_polygons]
    dets = [to_polygon(p) for p in det_polygons]
    gt_care = [g is not None and not ign for g, ign in zip(gts, gt_ignore)]
    dont_care = [g for g, ign in zip(gts, gt_ignore) if ign and g is not None]
    det_care = _detections_that_count(dets, dont_care, area_precision)
    det_matched = [False] * len(dets)
    matches = []
    for i, g in enumerate(gts):
        j = _first_match(g, dets, det_care, det_matched, iou_threshold) if gt_care[i] else None
        if j is not None:
            det_matched[j] = True
            matches.append((i, j))
    return ImageMatch(sum(gt_care), sum(det_care), len(matches), matches)


@dataclass
class Scores:
    precision: float
    recall: float
    hmean: float
    num_gt: int
    num_det: int
    num_matched: int
    num_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: list[ImageMatch]) -> Scores:
    gt = sum(r.num_gt for r in results)
    det = sum(r.num_det for r in results)
    matched = sum(r.num_matched for r in results)
    # Official script: precision 1 when there are no detections and no ground truth ... of either kind.
    recall = matched / gt if gt else (1.0 if det == 0 else 0.0)
    precision = matched / det if det else (1.0 if gt == 0 else 0.0)
    hmean = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return Scores(precision, recall, hmean, gt, det, matched, len(results))


def evaluate(samples) -> Scores:
    """``samples``: iterable of ``(gt_polygons, gt_ignore, det_polygons)`` per image."""
    return summarize([evaluate_image(g, ign, d) for g, ign, d in samples])
