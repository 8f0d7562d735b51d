"""Drawings for ``dbnet visualize`` (``dbcli.workflows.visualize``): detected polygons over an
image with their reading-order numbers and the scores that stand out (``draw_detections``), probability and threshold
maps as colour heatmaps beside it (``maps_panel``), PNG files written atomically (``write_png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dbcli.errors import DBNetError
from dbcli.outputs.atomic import atomic_write_bytes

BOX_COLOUR = (0, 255, 0)  # RGB
TEXT_COLOUR = (0, 0, 0)


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive ends)


def _candidates(box: Rect, size: tuple[int, int], width: int, inside: bool, far: int,
                anchor: tuple[int, int] | None = None) -> np.ndarray:
    """Spots ``(k, 4)`` for a label of ``size`` (w, h) beside ``box``, in order of preference: (for a
    tilted region, ``anchor``: its topmost corner: just above that corner, then just left of it, which
    touch the region where its bounding box's corners lie far from it); just above the box
    (left-aligned, kept inside the image's ``width``), just below, left of it (where line numbers go),
    right of it (both centred on it), (``inside``: in its top-left corner); then ``far`` rings of spots
    further out, half a label height apart (reached by a leader line)."""
    tw, th = size
    x0, y0, x1, y1 = box
    cy = (y0 + y1 - th) // 2
    xa = min(max(x0, 0), max(0, width - tw))
    near = [] if anchor is None else [(anchor[0] - tw // 2, anchor[1] - th), (anchor[0] - tw - 1, anchor[1])]
    spots = near + [(xa, y0 - th), (xa, y1), (x0 - tw - 1, cy), (x1 + 1, cy)] + ([(xa, y0)] if inside else [])
    for step in range(1, far + 1):
        d = step * max(th // 2, 1)
        spots += [(xa, y0 - th - d), (xa, y1 + d), (x1 + 1 + d, cy), (x0 - tw - 1 - d, cy),
                  (x1 + 1 + d, y0 - th - d), (x0 - tw - 1 - d, y0 - th - d), (x1 + 1 + d, y1 + d),
                  (x0 - tw - 1 - d, y1 + d)]
    xy = np.array(spots, np.int64).reshape(-1, 2)
    return np.concatenate([xy, xy + [tw, th]], axis=1)


def _overlap_area(spots: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """``(k, n)`` intersection areas of ``spots (k, 4)`` with ``rects (n, 4)`` (exclusive ends)."""
    w = np.minimum(spots[:, None, 2], rects[None, :, 2]) - np.maximum(spots[:, None, 0], rects[None, :, 0])
    h = np.minimum(spots[:, None, 3], rects[None, :, 3]) - np.maximum(spots[:, None, 1], rects[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _fitting_spots(box: Rect, size: tuple[int, int], image: tuple[int, int], inside: bool, far: int,
                   anchor: tuple[int, int] | None, clearance: float, required: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The spots of ``_candidates`` that lie inside the ``image`` (width, height), ``(k, 4)``, and the
    margin each must keep clear of other boxes (just above and just below the box: ``clearance`` of
    the label's height, so that it does not read as the next line's). With ``required`` and no spot
    inside the image: one inside the box, clamped to the image."""
    (tw, th), (width, height) = size, image
    spots = _candidates(box, (tw, th), width, inside, far, anchor)
    c = max(1, round(clearance * th))
    margin = np.zeros_like(spots)
    first = 0 if anchor is None else 2
    margin[first:first + 2] = [0, -c, 0, c]
    fits = (spots[:, 0] >= 0) & (spots[:, 1] >= 0) & (spots[:, 2] <= width) & (spots[:, 3] <= height)
    spots, margin = spots[fits], margin[fits]
    if required and len(spots) == 0:  # nothing beside the box fits the image: inside it, clamped
        x, y = min(max(box[0], 0), width - tw), min(max(box[1], 0), height - th)
        spots, margin = np.array([[x, y, x + tw, y + th]], np.int64), np.zeros((1, 4), np.int64)
    return spots, margin


def place_labels(boxes: Sequence[Rect | None], sizes: Sequence[tuple[int, int]], width: int, height: int, *,
                 inside: bool = False, required: bool = False, pad: int = 0, far: int = 8,
                 clearance: float = 0.25, anchors: Sequence[tuple[int, int] | None] | None = None
                 ) -> list[Rect | None]:
    """Where each detection's label goes: for the detection bounding ``boxes[k]`` (x0, y0, x1, y1 in
    pixels, exclusive ends; None: no label) a rectangle of ``sizes[k]`` (w, h) inside the
    ``width`` x ``height`` image that overlaps no other detection's box (grown by ``pad`` pixels,
    an outline's half-thickness) nor, just above or below its box, comes nearer to one than
    ``clearance`` of its own height (a label under its box but touching the next line reads as that
    line's), and overlaps
    no label placed before it. The first free spot of ``_candidates`` wins (``inside``: the label may sit in
    its own box's corner); ``far`` rings further out are tried too (draw a leader line to those).
    When no spot is free the label is None, or with ``required`` (numbers must not go missing) the
    spot covering the least of other boxes and labels. ``anchors``: per box, the topmost corner of a
    tilted region (its first spots, ``_candidates``), or None. Returns one rectangle (or None) per box."""
    real = [(k, b) for k, b in enumerate(boxes) if b is not None]
    grown = np.array([[b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad] for _, b in real], np.int64).reshape(-1, 4)
    owner = np.array([k for k, _ in real], np.int64)
    taken = np.zeros((len(boxes), 4), np.int64)
    n_taken = 0
    placed: list[Rect | None] = [None] * len(boxes)
    for k, box in enumerate(boxes):
        tw, th = sizes[k]
        if box is None or tw > width or th > height:
            continue
        spots, margin = _fitting_spots(box, (tw, th), (width, height), inside, far,
                                       anchors[k] if anchors is not None else None, clearance, required)
        if len(spots) == 0:
            continue
        cover = (_overlap_area(spots + margin, grown[owner != k]).sum(axis=1)
                 + _overlap_area(spots, taken[:n_taken]).sum(axis=1))
        free = np.flatnonzero(cover == 0)
        if len(free):
            best = int(free[0])
        elif required:
            best = int(np.argmin(cover))
        else:
            continue
        placed[k] = tuple(int(v) for v in spots[best])  # type: ignore[assignment]
        taken[n_taken] = spots[best]
        n_taken += 1
    return placed


def _leader(label: Rect, box: Rect) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """A line from ``label`` to the nearest point of ``box`` when they are apart (else None)."""
    lx, ly = (label[0] + label[2]) // 2, (label[1] + label[3]) // 2
    bx, by = min(max(lx, box[0]), box[2] - 1), min(max(ly, box[1]), box[3] - 1)
    gap_x = max(label[0] - box[2], box[0] - label[2], 0)
    gap_y = max(label[1] - box[3], box[1] - label[3], 0)
    if gap_x <= 1 and gap_y <= 1:
        return None
    ex, ey = min(max(bx, label[0]), label[2] - 1), min(max(by, label[1]), label[3] - 1)
    return (ex, ey), (bx, by)


MIN_LABEL_SCALE = 0.45  # the smallest label font scale (~10 px digits), at any box height
LABEL_VIEW_WIDTH = 2400  # ... and, on a large image, at least min(H, W) / this (legible when viewed whole)
TILTED = 0.7  # a region filling less of its bounding box than this is tilted: its label goes by a corner


SCORE_STANDS_OUT = 0.05  # a label shows its region's score when it is this far from the image's median


def label_texts(scores: Sequence[float], numbers: bool) -> list[str]:
    """Each region's label: its number in the drawing's order (the reading order, as crop files are
    numbered) and, unless ``numbers``, its score to 2 decimals where it stands out (``SCORE_STANDS_OUT``
    or more from the image's median score): on a page where every region scores 0.98-1.00, a score on
    every label says nothing, while a 0.71 among them is worth seeing."""
    if numbers or not len(scores):
        return [str(k + 1) for k in range(len(scores))]
    median = float(np.median(np.asarray(scores, np.float64)))
    return [f"{k + 1}:{score:.2f}" if abs(score - median) >= SCORE_STANDS_OUT else str(k + 1)
            for k, score in enumerate(scores)]


def _outline(points: np.ndarray, distance: int) -> np.ndarray:
    """The closed polygon ``points`` ``(n, 2)`` grown outward by ``distance`` pixels, ``(m, 1, 2)``
    int32: an outline drawn there with a stroke ``2 * distance - 1`` wide covers none of the region's
    own pixels (the first glyph stays whole)."""
    import pyclipper

    offset = pyclipper.PyclipperOffset()
    offset.AddPath(np.round(points).astype(np.int64).tolist(), pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(distance)
    path = np.array(grown[0] if len(grown) == 1 else np.round(points), np.int32)
    return path.reshape(-1, 1, 2)


def _anchor(points: np.ndarray, box: Rect) -> tuple[int, int] | None:
    """The topmost corner of a tilted region (filling less than ``TILTED`` of its bounding ``box``),
    where its label sits; None for an upright one."""
    area = abs(float(cv2.contourArea(points.astype(np.float32).reshape(-1, 1, 2))))
    box_area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    if len(points) < 3 or area >= TILTED * box_area:
        return None
    top = points[int(np.argmin(points[:, 1]))]
    return int(round(top[0])), int(round(top[1]))


def draw_detections(image: np.ndarray, detections: Sequence[tuple[np.ndarray, float]], numbers: bool = False
                    ) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` RGB image with each closed polygon outlined just outside its region
    (``_outline``) and labelled (``label_texts``: its number in ``detections``, the reading order, and
    unless ``numbers`` its score where it stands out) on a plate beside it: above, below,
    left or right of it (by its top corner when tilted; also in its own box's corner), further out with
    a leader line when those are taken, never over another detection nor another label where a free
    spot exists (``place_labels``); no label is left out. Labels are at least ``MIN_LABEL_SCALE``
    (and min(H, W) / ``LABEL_VIEW_WIDTH``) in size."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 600))
    grow = thickness // 2 + 1
    floor = max(MIN_LABEL_SCALE, min(h, w) / LABEL_VIEW_WIDTH)
    font_scale = max(floor, min(h, w) / 900)
    boxes: list[Rect | None] = []
    anchors: list[tuple[int, int] | None] = []
    for points, _ in detections:
        points = np.asarray(points, np.float64).reshape(-1, 2)
        if len(points) < 2:
            boxes.append(None)
            anchors.append(None)
            continue
        outline = _outline(points, grow) if len(points) >= 3 else np.round(points).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [outline], True, BOX_COLOUR, thickness, cv2.LINE_AA)
        x0, y0 = outline.reshape(-1, 2).min(axis=0) - thickness // 2
        x1, y1 = outline.reshape(-1, 2).max(axis=0) + thickness // 2
        bounds = (int(x0), int(y0), int(x1) + 1, int(y1) + 1)
        boxes.append(bounds)
        anchors.append(_anchor(outline.reshape(-1, 2), bounds))
    texts = label_texts([score for _, score in detections], numbers)
    scales, sizes, bases = [], [], []
    for box, text in zip(boxes, texts):
        height = box[3] - box[1] if box is not None else 0
        scales.append(min(font_scale, max(floor, height / 36)))  # small text: a small label, legible still
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scales[-1], 1)
        sizes.append((tw + 2, th + base + 3))
        bases.append(th)
    spots = place_labels(boxes, sizes, w, h, inside=True, required=True, anchors=anchors)
    for box, spot, text, scale, th in zip(boxes, spots, texts, scales, bases):  # labels over all outlines
        if spot is None or box is None:
            continue
        leader = _leader(spot, box)
        if leader is not None:
            cv2.line(out, leader[0], leader[1], BOX_COLOUR, 1, cv2.LINE_AA)
        cv2.rectangle(out, (spot[0], spot[1]), (spot[2] - 1, spot[3] - 1), BOX_COLOUR, -1)
        cv2.putText(out, text, (spot[0] + 1, spot[1] + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    TEXT_COLOUR, 1, cv2.LINE_AA)
    return out


def heatmap(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """A [0, 1] map resized to ``width`` x ``height`` as an RGB colour image (turbo colour map)."""
    m = cv2.resize(np.clip(values, 0, 1).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.round(m * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    return cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)


def _with_header(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel under a white strip with its caption (so the caption never hides the image)."""
    scale = max(0.4, panel.shape[0] / 700)
    (_, th), base = cv2.getTextSize("Apg", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)  # same height for all
    strip = np.full((th + base + 8, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def maps_panel(overlay: np.ndarray, prob: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """[image with detections | probability map | threshold map], all at the image's size, each
    under a caption strip."""
    h, w = overlay.shape[:2]
    panels = [_with_header(overlay, "detections"), _with_header(heatmap(prob, w, h), "probability map P"),
              _with_header(heatmap(thresh, w, h), "threshold map T")]
    sep = np.full((panels[0].shape[0], max(2, w // 200), 3), 255, np.uint8)
    return np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DBNetError(f"{path}: PNG encoding failed")
    try:
        return atomic_write_bytes(path, data.tobytes())
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write ({exc.strerror or exc})") from None
