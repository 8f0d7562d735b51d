"""Probability map -> text boxes or polygons (SPEC: "Inference post-processing").

Input: ``prob_map`` ``(h, w)`` float array in [0, 1] for the resized network input. Output: a list of
``Detection`` whose ``points`` ``(K, 2)`` are float (x, y) in the ORIGINAL image's pixels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace
from itertools import chain
from operator import itemgetter

import cv2
import numpy as np
import pyclipper

from dbcli import defaults
from dbcli.geometry import polygon_area, polygon_perimeter


@dataclass(frozen=True)
class PostConfig:
    thresh: float = defaults.THRESH  # binarization of P (authors' code; the paper's text says 0.2)
    box_thresh: float = defaults.BOX_THRESH  # minimum mean probability of a region
    unclip_ratio: float = defaults.UNCLIP_RATIO  # r' of D' = A' r' / L'
    max_candidates: int = defaults.MAX_CANDIDATES
    min_size: float = 3.0  # minimum short side (pixels of the network input) before unclipping
    polygon: bool = False  # polygons (curved text) instead of 4-point rotated boxes


def post_config_from(saved: dict | None, base: PostConfig = PostConfig(), **given) -> PostConfig:
    """``base`` updated with the ``PostConfig`` entries of ``saved`` (a weights file's ``postprocess``
    dict; unknown keys are ignored), then with the ``given`` values that are not None."""
    known = {f.name for f in fields(PostConfig)}
    entries = {k: v for k, v in (saved or {}).items() if k in known}
    entries.update((k, v) for k, v in given.items() if v is not None)
    return replace(base, **entries)


class CandidateCapWarning(UserWarning):
    """A probability map had more candidate regions than ``PostConfig.max_candidates``: the rest were
    dropped. Callers catch it and say it in their own words (it is never meant to reach a user raw)."""


def post_entries_problem(saved) -> str | None:
    """What is wrong with a weights file's ``postprocess`` entry (a setting of the wrong type, such
    as a threshold given as text), or None. Unknown keys are allowed (``post_config_from`` skips
    them)."""
    if saved is None:
        return None
    if not isinstance(saved, dict):
        return "the postprocess entry is not a table of settings"
    for f in fields(PostConfig):
        if f.name not in saved:
            continue
        value, kind = saved[f.name], f.type if isinstance(f.type, str) else f.type.__name__
        if kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            want = {"bool": "true or false", "int": "a whole number"}.get(kind, "a number")
            return f"postprocess {f.name} must be {want}, got {value!r}"
    return None


@dataclass
class Detection:
    points: np.ndarray  # (K, 2) float64, original-image pixels, clockwise from top-left for boxes
    score: float
    text: str | None = None  # the text read in the region (``--text``), else None
    text_score: float | None = None  # the recogniser's confidence in [0, 1], with ``text``

    def to_dict(self, ndigits: int = 1) -> dict:
        entry: dict = {"points": [[round(float(x), ndigits), round(float(y), ndigits)] for x, y in self.points],
                       "score": round(float(self.score), 4)}
        if self.text is not None:
            entry["text"] = self.text
            entry["text_score"] = round(float(self.text_score or 0.0), 4)
        return entry


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
    best = pieces[0] if len(pieces) == 1 else max(pieces, key=lambda p: abs(pyclipper.Area(p)))
    return np.fromiter(chain.from_iterable(best), np.float64, 2 * len(best)).reshape(-1, 2)


def order_box(box: np.ndarray) -> np.ndarray:
    """Order 4 corners clockwise starting at the top-left (as ICDAR ground truth)."""
    # Stable sort by x, then each pair by y (stable): plain Python on 4 points is ~10x faster than
    # three numpy argsorts and gives the same order.
    b = box.tolist()
    l0, l1, r0, r1 = sorted(range(4), key=lambda i: b[i][0])
    if b[l1][1] < b[l0][1]:
        l0, l1 = l1, l0
    if b[r1][1] < b[r0][1]:
        r0, r1 = r1, r0
    return box[[l0, r0, r1, l1]]


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rotated rectangle of points: (4x2 ordered corners, shorter side)."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    return order_box(cv2.boxPoints(rect).astype(np.float64)), float(min(rect[1]))


def _int_region_score(prob_map: np.ndarray, points: np.ndarray) -> float:
    """Mean of ``prob_map`` inside the polygon of integer ``(K, 2)`` or ``(K, 1, 2)`` int32 points
    inside the map (contours, their approxPolyDP subsets): an exact fill of the bounding-box crop."""
    x0, y0, bw, bh = cv2.boundingRect(points)
    mask = np.zeros((bh, bw), np.uint8)
    cv2.fillPoly(mask, [points], 1, offset=(-x0, -y0))
    return cv2.mean(prob_map[y0:y0 + bh, x0:x0 + bw], mask)[0]


# The box-mode hot path below works on the 4 corners as Python floats: the same arithmetic as
# ``order_box``/``polygon_area``/``polygon_perimeter``/``unclip`` in the same order (so the same
# results bit for bit; tests/test_reference_parity.py checks it), without ~25 small numpy calls.

_X = itemgetter(0)


def _corners(rect) -> list[list[float]]:
    """``order_box(cv2.boxPoints(rect))`` as a list of 4 ``[x, y]`` Python floats."""
    l0, l1, r0, r1 = sorted(cv2.boxPoints(rect).tolist(), key=_X)  # stable, as order_box
    if l1[1] < l0[1]:
        l0, l1 = l1, l0
    if r1[1] < r0[1]:
        r0, r1 = r1, r0
    return [l0, r0, r1, l1]


def _unclip_quad(corners: list[list[float]], unclip_ratio: float) -> np.ndarray | None:
    """``unclip(np.array(corners), unclip_ratio)`` as float32 points (the next step's input)."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners
    area = 0.5 * ((x0 * y1 + x1 * y2 + x2 * y3 + x3 * y0) - (x1 * y0 + x2 * y1 + x3 * y2 + x0 * y3))
    a, b, c, d = x0 - x1, y0 - y1, x1 - x2, y1 - y2
    e, f, g, h = x2 - x3, y2 - y3, x3 - x0, y3 - y0
    perimeter = math.sqrt(a * a + b * b) + math.sqrt(c * c + d * d) + math.sqrt(e * e + f * f) + \
        math.sqrt(g * g + h * h)
    if perimeter <= 0:
        return None
    pco = pyclipper.PyclipperOffset()
    pco.AddPath([[round(x), round(y)] for x, y in corners], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    pieces = pco.Execute(abs(area) * unclip_ratio / perimeter)
    if not pieces:
        return None
    best = pieces[0] if len(pieces) == 1 else max(pieces, key=lambda p: abs(pyclipper.Area(p)))
    return np.fromiter(chain.from_iterable(best), np.float32, 2 * len(best)).reshape(-1, 2)


def boxes_from_prob_map(prob_map: np.ndarray, orig_width: int, orig_height: int,
                        config: PostConfig = PostConfig()) -> list[Detection]:
    """Detections in original-image coordinates from one probability map ``(h, w)``; a map with more
    than ``config.max_candidates`` candidate regions gives a ``CandidateCapWarning`` (the engine uses
    ``detections_and_candidates`` and returns the count instead)."""
    detections, candidates = detections_and_candidates(prob_map, orig_width, orig_height, config)
    if candidates > config.max_candidates:
        warnings.warn(CandidateCapWarning(cap_message(candidates, config.max_candidates)), stacklevel=2)
    return detections


def cap_message(candidates: int, max_candidates: int) -> str:
    """What to tell the user about a map with more candidate regions than ``max_candidates``."""
    return (f"{candidates} candidate regions, only the first {max_candidates} are kept "
            "(--max-candidates raises the cap)")


def _polygon_region(prob_map: np.ndarray, contour: np.ndarray, config: PostConfig, scale: tuple[float, float],
                    size: tuple[float, float]) -> Detection | None:
    """A contour as a polygon (``config.polygon``), in original-image pixels ``size`` (w, h), or None."""
    epsilon = 0.002 * cv2.arcLength(contour, True)  # authors' value
    points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
    if len(points) < 4:
        return None
    if min(cv2.minAreaRect(points)[1]) < config.min_size:  # (int32 = float32 result, see _box_region)
        return None
    score = _int_region_score(prob_map, points)
    if score < config.box_thresh:
        return None
    expanded = unclip(points, config.unclip_ratio)
    if expanded is None or len(expanded) < 3:
        return None
    if min(cv2.minAreaRect(expanded.astype(np.float32))[1]) < config.min_size + 2:
        return None
    out = expanded * scale
    np.clip(out, 0, size, out=out)
    return Detection(out, score)


def _box_region(prob_map: np.ndarray, contour: np.ndarray, config: PostConfig, scale: tuple[float, float],
                size: tuple[float, float]) -> Detection | None:
    """A contour as a 4-point box (= mini_box, mean score, unclip, mini_box; see _corners), in
    original-image pixels ``size`` (w, h), or None."""
    # minAreaRect of the int32 contour = of its float32 copy (convexHull's integer path is exact and
    # the hull goes to float32 before the rotating calipers), one copy less.
    rect = cv2.minAreaRect(contour)
    if min(rect[1]) < config.min_size:
        return None
    score = _int_region_score(prob_map, contour)
    if score < config.box_thresh:
        return None
    expanded = _unclip_quad(_corners(rect), config.unclip_ratio)
    if expanded is None:
        return None
    rect = cv2.minAreaRect(expanded)
    if min(rect[1]) < config.min_size + 2:
        return None
    (sx, sy), (width, height) = scale, size
    out = np.array([[min(max(x * sx, 0.0), width), min(max(y * sy, 0.0), height)] for x, y in _corners(rect)],
                   dtype=np.float64)
    return Detection(out, score)


def detections_and_candidates(prob_map: np.ndarray, orig_width: float, orig_height: float,
                              config: PostConfig = PostConfig()) -> tuple[list[Detection], int]:
    """``(detections, candidates)``: the detections in original-image pixels from one probability
    map ``(h, w)`` (float, [0, 1]), and how many candidate regions the binarised map had (only the
    first ``config.max_candidates`` are post-processed)."""
    prob_map = np.ascontiguousarray(prob_map, dtype=np.float32)
    h, w = prob_map.shape
    # A bool array viewed as uint8 is the same 0/1 bitmap as ``.astype(np.uint8)``, without a copy.
    bitmap = np.greater(prob_map, config.thresh).view(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    candidates = len(contours)
    if candidates > config.max_candidates:
        contours = contours[: config.max_candidates]
    scale, size = (orig_width / w, orig_height / h), (orig_width, orig_height)
    region = _polygon_region if config.polygon else _box_region
    detections = []
    # Hot loop: cheap rejections first (point count, size), then the score, then the unclip.
    for contour in contours:
        if len(contour) < 3:
            continue
        det = region(prob_map, contour, config, scale, size)
        if det is not None:
            detections.append(det)
    return detections, candidates
