"""Reading order of detections (the default order of every ``dbnet detect`` output).

Modes (``--sort``):
- ``lines`` (default): text lines top to bottom, regions left to right within a line. Two regions
  are on one line when each one's centre lies within the other's height band, measured across its
  own text direction (so a slightly tilted line, or a whole page photographed a few degrees off,
  still reads as lines). On a page with several columns a line runs across them: the order of a
  form, a receipt, a table or a screenshot.
- ``columns``: for multi-column documents: a recursive XY-cut. A region of the page splits at a
  vertical gutter (a gap at least one text height wide that no region crosses) into columns read
  left to right, else at its widest horizontal gap into parts read top to bottom; what cannot be
  cut any more is read as ``lines``.
- ``none``: the order of the post-processing (the probability map's contours).

Polygons are ``(K, 2)`` float arrays of (x, y) pixels; functions return index permutations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

SORT_MODES = ("lines", "columns", "none")
ELONGATED = 2.0  # a region this many times longer than high has a trustworthy text direction
MAX_TILT = 45.0  # directions steeper than this (degrees) are vertical text, not tilted lines


def _direction(polygon: np.ndarray) -> tuple[float, float]:
    """(angle in degrees of the longer side of the minimum-area rectangle, in (-90, 90]; its aspect
    ratio, longer / shorter side)."""
    corners = cv2.boxPoints(cv2.minAreaRect(polygon.astype(np.float32))).astype(np.float64)
    a, b = corners[1] - corners[0], corners[2] - corners[1]
    long_side, short_side = (a, b) if np.hypot(*a) >= np.hypot(*b) else (b, a)
    angle = math.degrees(math.atan2(long_side[1], long_side[0]))
    angle = (angle + 90.0) % 180.0 - 90.0  # (-90, 90]: a direction, not a heading
    return (90.0 if angle == -90.0 else angle), float(np.hypot(*long_side) / max(np.hypot(*short_side), 1e-6))


def _level(direction: tuple[float, float]) -> bool:
    """Whether a region's own direction is that of a text line: elongated and not vertical."""
    angle, aspect = direction
    return aspect >= ELONGATED and abs(angle) <= MAX_TILT


def page_skew(directions: Sequence[tuple[float, float]]) -> float:
    """The page's text direction in degrees (positive: lines descend to the right, image axes) from
    the regions' ``_direction``s: the median direction of the line-like regions; 0 when none is."""
    angles = [d[0] for d in directions if _level(d)]
    return float(np.median(angles)) if angles else 0.0


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    """``(..., 2)`` points rotated by ``-degrees`` about the origin: text at that angle becomes level."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return points @ np.array([[c, -s], [s, c]])


def _bands(polygons: Sequence[np.ndarray], centres: np.ndarray, angles: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For regions whose text runs at ``angles`` (radians, one each): ``inside[i, j]`` (j's centre
    lies within i's height band, across i's direction), ``along[i, j]`` (how far j's centre lies
    from i's along i's direction, absolute) and each region's half length and half height."""
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    normals = np.stack([-np.sin(angles), np.cos(angles)], axis=1)  # (n, 2): "down" across each line
    half_height = np.array([0.5 * float(np.ptp(p @ normals[i])) for i, p in enumerate(polygons)])
    half_length = np.array([0.5 * float(np.ptp(p @ directions[i])) for i, p in enumerate(polygons)])
    offsets = centres[None, :, :] - centres[:, None, :]  # [i, j]: from i's centre to j's
    across = np.einsum("ijk,ik->ij", offsets, normals)
    along = np.abs(np.einsum("ijk,ik->ij", offsets, directions))
    return np.abs(across) <= half_height[:, None] + 1e-9, along, half_length, half_height


def _line_groups(polygons: Sequence[np.ndarray], directions: Sequence[tuple[float, float]], skew: float
                 ) -> list[list[int]]:
    """Indices of ``polygons`` grouped into text lines (connected components of the "same line"
    relation), each group left to right, groups top to bottom.

    Two regions are on one line when each one's centre lies within the other's height band across
    the page's direction ``skew``, or, for near neighbours (at most two text heights apart), across
    their own directions: a short word's own direction is too noisy to follow far (a 4-degree error
    crosses a line within ~14 heights), but it carries a tilted line, such as a sign in a photo
    of a level page, from one word to the next. Regions that are not line-like (a single letter,
    vertical text) go by the page's direction only."""
    n = len(polygons)
    centres = np.stack([p.mean(axis=0) for p in polygons])
    page_inside, _, _, _ = _bands(polygons, centres, np.full(n, math.radians(skew)))
    own = np.radians([d[0] if _level(d) else skew for d in directions])
    own_inside, along, half_length, half_height = _bands(polygons, centres, own)
    near = along - half_length[:, None] - half_length[None, :] <= 4 * np.maximum.outer(half_height, half_height)
    same = (page_inside & page_inside.T) | (own_inside & own_inside.T & near & near.T)
    label = np.full(n, -1)
    groups: list[list[int]] = []
    for start in range(n):  # connected components, breadth first
        if label[start] >= 0:
            continue
        label[start], queue, members = len(groups), [start], []
        while queue:
            i = queue.pop()
            members.append(i)
            for j in np.flatnonzero(same[i] & (label < 0)):
                label[j] = len(groups)
                queue.append(int(j))
        groups.append(members)
    level = _rotate(centres, skew)  # deskewed centres: x along the page's lines, y down the page
    groups = [sorted(g, key=lambda i: (level[i, 0], level[i, 1])) for g in groups]
    groups.sort(key=lambda g: (float(np.mean(level[g, 1])), float(level[g[0], 0])))
    return groups


def _gaps(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """The gaps ``(from, to)`` between the union of the intervals ``[starts, ends]``, in order."""
    order = np.argsort(starts, kind="stable")
    gaps, reach = [], float(ends[order[0]])
    for i in order[1:]:
        if starts[i] > reach:
            gaps.append((reach, float(starts[i])))
        reach = max(reach, float(ends[i]))
    return gaps


def _column_parts(indices: list[int], b: np.ndarray, gutter: float) -> list[list[int]] | None:
    """``indices`` split at vertical gutters at least ``gutter`` wide into columns, left to right; else
    split at the widest horizontal gap into the part above and the part below; None when neither
    exists. ``b``: the deskewed boxes of ``indices``."""
    cuts = [(lo + hi) / 2 for lo, hi in _gaps(b[:, 0], b[:, 2]) if hi - lo >= gutter]
    if cuts:
        column = np.searchsorted(cuts, (b[:, 0] + b[:, 2]) / 2)
        return [[i for i, c in zip(indices, column) if c == k] for k in range(len(cuts) + 1)]
    gaps = _gaps(b[:, 1], b[:, 3])
    if gaps:
        lo, hi = max(gaps, key=lambda g: g[1] - g[0])
        above = (b[:, 1] + b[:, 3]) / 2 < (lo + hi) / 2
        return [[i for i, a in zip(indices, part) if a] for part in (above, ~above)]
    return None


def _xy_cut(indices: list[int], boxes: np.ndarray, gutter: float, polygons: Sequence[np.ndarray],
            directions: Sequence[tuple[float, float]], skew: float, out: list[int]) -> None:
    """Append ``indices`` to ``out`` in column order (see the module doc); ``boxes`` ``(n, 4)`` are the
    deskewed bounding boxes ``x0, y0, x1, y1``."""
    if len(indices) <= 1:
        out.extend(indices)
        return
    parts = _column_parts(indices, boxes[indices], gutter)
    if parts is None:  # one block: its lines
        for group in _line_groups([polygons[i] for i in indices], [directions[i] for i in indices], skew):
            out.extend(indices[i] for i in group)
        return
    for part in parts:
        _xy_cut(part, boxes, gutter, polygons, directions, skew, out)


def reading_order(polygons: Sequence[np.ndarray], mode: str = "lines") -> list[int]:
    """The order in which to read ``polygons`` (each ``(K, 2)`` x, y pixels): a permutation of
    ``range(len(polygons))`` for ``mode`` ``"lines"``, ``"columns"`` or ``"none"`` (module doc)."""
    if mode not in SORT_MODES:
        raise ValueError(f"unknown reading order {mode!r} ({', '.join(SORT_MODES)})")
    polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]
    if mode == "none" or len(polygons) < 2:
        return list(range(len(polygons)))
    directions = [_direction(p) for p in polygons]
    skew = page_skew(directions)
    if mode == "lines":
        return [i for group in _line_groups(polygons, directions, skew) for i in group]
    level = [_rotate(p, skew) for p in polygons]
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in level])
    gutter = max(float(np.median(boxes[:, 3] - boxes[:, 1])), 1.0)  # one (median) text height
    out: list[int] = []
    _xy_cut(list(range(len(polygons))), boxes, gutter, polygons, directions, skew, out)
    return out


def line_labels(polygons: Sequence[np.ndarray]) -> list[int]:
    """The text line each of ``polygons`` lies on (the ``lines`` grouping: regions whose centres lie
    within each other's height band), numbered 0, 1, ... top to bottom. ``dbnet ocr`` joins the
    regions of one line into one line of text."""
    polygons = [np.asarray(p, np.float64).reshape(-1, 2) for p in polygons]
    if len(polygons) < 2:
        return [0] * len(polygons)
    directions = [_direction(p) for p in polygons]
    labels = [0] * len(polygons)
    for number, group in enumerate(_line_groups(polygons, directions, page_skew(directions))):
        for i in group:
            labels[i] = number
    return labels
