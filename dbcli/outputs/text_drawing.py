"""``dbnet visualize --text``: each detection's text written beside its box (``draw_text``).

The text goes on a white label with a thin outline just above or below its box (else left or right,
``dbcli.outputs.drawing.place_labels``), never over another box or label, in a font sized to the
box's height. A text with no free spot is numbered instead (the number on a small plate at its box)
and listed, ``N. text``, in a white margin added to the right of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dbcli.outputs.drawing import BOX_COLOUR, Rect, place_labels

FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
              "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")
MIN_FONT, MAX_FONT = 11, 40  # label text height in pixels
MARGIN_FONT = 16
TEXT_COLOUR = (0, 0, 0)
LABEL_FILL = (255, 255, 255)


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A sans-serif font ``size`` px high: DejaVu or Liberation Sans when installed, else Pillow's own."""
    for name in FONT_FILES:
        if Path(name).exists():
            return ImageFont.truetype(name, size)
    return ImageFont.load_default(size=size)


def _outlines(out: np.ndarray, points: Sequence[np.ndarray], thickness: int) -> list[Rect | None]:
    """Each polygon drawn on ``out`` (in place); its bounding rectangle (None: fewer than 2 points)."""
    boxes: list[Rect | None] = []
    for p in points:
        outline = np.round(np.asarray(p, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(outline) < 2:
            boxes.append(None)
            continue
        cv2.polylines(out, [outline], True, BOX_COLOUR, thickness, cv2.LINE_AA)
        (x0, y0), (x1, y1) = outline.reshape(-1, 2).min(axis=0), outline.reshape(-1, 2).max(axis=0)
        boxes.append((int(x0), int(y0), int(x1) + 1, int(y1) + 1))
    return boxes


def _sizes(texts: Sequence[str], fonts: Sequence) -> list[tuple[int, int]]:
    """Each label's (w, h) in pixels: the text's extent plus a 3-px border."""
    sizes = []
    for text, font in zip(texts, fonts):
        x0, y0, x1, y1 = font.getbbox(text or " ")
        sizes.append((int(x1 - min(x0, 0)) + 6, int(font.size if hasattr(font, "size") else y1) + 8))
    return sizes


def _plate(draw: ImageDraw.ImageDraw, spot: Rect, text: str, font) -> None:
    draw.rectangle((spot[0], spot[1], spot[2] - 1, spot[3] - 1), fill=LABEL_FILL, outline=BOX_COLOUR)
    draw.text((spot[0] + 3, spot[1] + 2), text, fill=TEXT_COLOUR, font=font)


def _margin(image: Image.Image, listed: Sequence[tuple[int, str]]) -> Image.Image:
    """``image`` with a white margin on the right listing ``N. text`` for each of ``listed``."""
    font = label_font(MARGIN_FONT)
    lines = [f"{n}. {text}" for n, text in listed]
    width = max(int(font.getlength(line)) for line in lines) + 20
    height = max(image.height, 10 + len(lines) * (MARGIN_FONT + 6))
    page = Image.new("RGB", (image.width + width, height), LABEL_FILL)
    page.paste(image, (0, 0))
    draw = ImageDraw.Draw(page)
    for k, line in enumerate(lines):
        draw.text((image.width + 10, 8 + k * (MARGIN_FONT + 6)), line, fill=TEXT_COLOUR, font=font)
    return page


def _fonts(boxes: Sequence[Rect | None]) -> list:
    """A font per box, 0.8 of its height (between ``MIN_FONT`` and ``MAX_FONT`` pixels)."""
    return [label_font(MIN_FONT if b is None else int(np.clip(0.8 * (b[3] - b[1]), MIN_FONT, MAX_FONT)))
            for b in boxes]


def _numbered(wanted: Sequence[Rect | None], left: list[int], width: int, height: int) -> list[Rect | None]:
    """Where the number of each detection in ``left`` goes: a small plate at its box (in its corner
    when nothing beside it is free)."""
    font = label_font(MIN_FONT)
    boxes = [wanted[k] if k in left else None for k in range(len(wanted))]
    sizes = _sizes([str(k + 1) for k in range(len(wanted))], [font] * len(wanted))
    return place_labels(boxes, sizes, width, height, inside=True, required=True, far=4)


def draw_text(image: np.ndarray, detections: Sequence[tuple[np.ndarray, str]]) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` uint8 RGB image with each polygon outlined and its text (``(points,
    text)`` per detection, in reading order) on a label beside it (module doc); texts that find no
    free spot are numbered (from 1, in ``detections``' order) and listed in a right margin, which
    makes the result wider than the image. Empty texts get no label."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 300))
    boxes = _outlines(out, [p for p, _ in detections], thickness)
    texts = [t for _, t in detections]
    fonts, wanted = _fonts(boxes), [b if t else None for b, t in zip(boxes, texts)]
    spots = place_labels(wanted, _sizes(texts, fonts), w, h, pad=(thickness + 1) // 2, far=1)
    left = [k for k, (b, s) in enumerate(zip(wanted, spots)) if b is not None and s is None]
    numbers = _numbered(wanted, left, w, h)
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    plates = [(spot, texts[k], fonts[k]) for k, spot in enumerate(spots)]
    plates += [(numbers[k], str(k + 1), label_font(MIN_FONT)) for k in left]
    for spot, text, font in plates:
        if spot is not None:
            _plate(draw, spot, text, font)
    if left:
        canvas = _margin(canvas, [(k + 1, texts[k]) for k in left])
    return np.asarray(canvas).copy()
