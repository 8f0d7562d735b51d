"""Drawings for ``dbnet visualize`` (``dbcli.inference.visualize_files``): detected polygons over an
image with their scores or reading-order numbers (``draw_detections``), probability and threshold
maps as colour heatmaps beside it (``maps_panel``), PNG files written atomically (``write_png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dbcli.errors import DBNetError
from dbcli.fileio import atomic_write_bytes

BOX_COLOUR = (0, 255, 0)  # RGB
TEXT_COLOUR = (0, 0, 0)


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive ends)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_place(box: Rect, size: tuple[int, int], width: int, height: int, taken: list[Rect],
                 others: list[Rect], beside: bool = False) -> Rect | None:
    """Where a label of ``size`` (w, h) goes for the detection whose bounding box is ``box``: just
    above it, else just below it (with ``beside``, else left of it, as line numbers sit), never over
    another detection (whose text it would hide) nor over a label already placed; None when no spot
    is free (the outline is still drawn)."""
    tw, th = size
    x = min(max(box[0], 0), max(0, width - tw))
    spots = [(x, box[1] - th), (x, box[3])] + ([(box[0] - tw - 1, box[1])] if beside else [])
    for x0, y0 in spots:
        spot = (x0, y0, x0 + tw, y0 + th)
        if x0 < 0 or y0 < 0 or spot[2] > width or spot[3] > height:
            continue
        if not any(_overlaps(spot, r) for r in taken) and not any(_overlaps(spot, r) for r in others):
            return spot
    return None


def draw_detections(image: np.ndarray, detections: Sequence[tuple[np.ndarray, float]], numbers: bool = False
                    ) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` RGB image with each closed polygon drawn and its score (or, with
    ``numbers``, its position in ``detections`` from 1: the reading order, as crop files are
    numbered) written just above it (or below it). On a dense page a score that would cover another
    detection's text or another label is left out; a number then goes inside its box's corner."""
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
    taken: list[Rect] = []
    for k, (box, (_, score)) in enumerate(zip(boxes, detections)):  # labels over all outlines
        if box is None:
            continue
        label = str(k + 1) if numbers else f"{score:.2f}"
        scale = min(font_scale, max(0.3, (box[3] - box[1]) / 36))  # small text: a small label
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        others = [r for j, r in enumerate(boxes) if j != k and r is not None]
        spot = _label_place(box, (tw + 2, th + base + 3), w, h, taken, others, beside=numbers)
        if spot is None and numbers:  # a number must not go missing: inside the box's top-left corner
            x0, y0 = min(max(box[0], 0), max(0, w - tw - 2)), min(max(box[1], 0), max(0, h - th - base - 3))
            spot = (x0, y0, x0 + tw + 2, y0 + th + base + 3)
        if spot is None:
            continue
        taken.append(spot)
        cv2.rectangle(out, (spot[0], spot[1]), (spot[2] - 1, spot[3] - 1), BOX_COLOUR, -1)
        cv2.putText(out, label, (spot[0] + 1, spot[1] + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
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
