"""Drawings for ``dbnet visualize`` (``dbcli.workflows.visualize``): detected polygons over an
image with their scores or reading-order numbers (``draw_detections``), probability and threshold
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


def _candidates(box: Rect, size: tuple[int, int], width: int, inside: bool, far: int) -> np.ndarray:
    """Spots ``(k, 4)`` for a label of ``size`` (w, h) beside ``box``, in order of preference: just
    above it (left-aligned, kept inside the image's ``width``), just below, left of it (where line
    numbers go), right of it (both centred on it), (``inside``: in its top-left corner); then ``far`` rings of spots
    further out, half a label height apart (reached by a leader line)."""
    tw, th = size
    x0, y0, x1, y1 = box
    cy = (y0 + y1 - th) // 2
    xa = min(max(x0, 0), max(0, width - tw))
    spots = [(xa, y0 - th), (xa, y1), (x0 - tw - 1, cy), (x1 + 1, cy)] + ([(xa, y0)] if inside else [])
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


def place_labels(boxes: Sequence[Rect | None], sizes: Sequence[tuple[int, int]], width: int, height: int, *,
                 inside: bool = False, required: bool = False, pad: int = 0, far: int = 8,
                 clearance: float = 0.25) -> list[Rect | None]:
    """Where each detection's label goes: for the detection bounding ``boxes[k]`` (x0, y0, x1, y1 in
    pixels, exclusive ends; None: no label) a rectangle of ``sizes[k]`` (w, h) inside the
    ``width`` x ``height`` image that overlaps no other detection's box (grown by ``pad`` pixels,
    an outline's half-thickness) nor, just above or below its box, comes nearer to one than
    ``clearance`` of its own height (a label under its box but touching the next line reads as that
    line's), and overlaps
    no label placed before it. The first free spot of ``_candidates`` wins (``inside``: the label may sit in
    its own box's corner); ``far`` rings further out are tried too (draw a leader line to those).
    When no spot is free the label is None, or with ``required`` (numbers must not go missing) the
    spot covering the least of other boxes and labels. Returns one rectangle (or None) per box."""
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
        spots = _candidates(box, (tw, th), width, inside, far)
        # just above and just below (the first two spots): kept clear of the boxes above and below
        c = max(1, round(clearance * th))
        margin = np.zeros_like(spots)
        margin[:2] = [0, -c, 0, c]
        fits = (spots[:, 0] >= 0) & (spots[:, 1] >= 0) & (spots[:, 2] <= width) & (spots[:, 3] <= height)
        spots, margin = spots[fits], margin[fits]
        if required and len(spots) == 0:  # nothing beside the box fits the image: inside it, clamped
            x, y = min(max(box[0], 0), width - tw), min(max(box[1], 0), height - th)
            spots, margin = np.array([[x, y, x + tw, y + th]], np.int64), np.zeros((1, 4), np.int64)
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


def draw_detections(image: np.ndarray, detections: Sequence[tuple[np.ndarray, float]], numbers: bool = False
                    ) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` RGB image with each closed polygon drawn and its score (or, with
    ``numbers``, its position in ``detections`` from 1: the reading order, as crop files are
    numbered) on a plate beside it: above, below, left or right of it (a number also in its own
    box's corner; further out, with a leader line, when those are taken), never over another
    detection nor another label (``place_labels``). On a dense page a score with no free spot is
    left out; a number never is."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 300))
    font_scale = max(0.35, min(h, w) / 900)
    boxes: list[Rect | None] = []
    for points, _ in detections:
        outline = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(outline) < 2:
            boxes.append(None)
            continue
        cv2.polylines(out, [outline], True, BOX_COLOUR, thickness, cv2.LINE_AA)
        x0, y0 = outline.reshape(-1, 2).min(axis=0)
        x1, y1 = outline.reshape(-1, 2).max(axis=0)
        boxes.append((int(x0), int(y0), int(x1) + 1, int(y1) + 1))
    texts, scales, sizes, bases = [], [], [], []
    for k, (box, (_, score)) in enumerate(zip(boxes, detections)):
        texts.append(str(k + 1) if numbers else f"{score:.2f}")
        height = box[3] - box[1] if box is not None else 0
        scales.append(min(font_scale, max(0.3, height / 36)))  # small text: a small label
        (tw, th), base = cv2.getTextSize(texts[-1], cv2.FONT_HERSHEY_SIMPLEX, scales[-1], 1)
        sizes.append((tw + 2, th + base + 3))
        bases.append(th)
    spots = place_labels(boxes, sizes, w, h, inside=numbers, required=numbers, pad=(thickness + 1) // 2,
                         far=8 if numbers else 0)  # a score with no room beside its box is left out
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
