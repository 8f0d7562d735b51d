"""Generated large pages of small text with known word boxes (no font files, no downloads): the
inputs of ``bench/bench_scale.py`` (coverage of small text on big pages, cost, memory).

``text_page(width, height, text_height, ...)`` renders lines of words in OpenCV's built-in fonts,
black on an off-white page, into ``blocks`` rectangles of the page (a form or a column of text each;
``fill`` of each block's rows are lines, the rest blank) and returns the image with every word's
axis-aligned box ``(x0, y0, x1, y1)`` in page pixels. ``coverage(words, detections)``: the share of
the words covered by detections (a word is covered when one detection no more than 2.5x its height
covers >= 50% of its box: blobs over several lines do not count).
Deterministic given ``seed``.
"""

from __future__ import annotations

import cv2
import numpy as np

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX)
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

Box = tuple[int, int, int, int]


def _word(rng: np.random.Generator) -> str:
    n = int(rng.integers(2, 10))
    return "".join(rng.choice(list(LETTERS), n))


def draw_line(image: np.ndarray, x: int, y: int, right: int, text_height: int, rng: np.random.Generator,
              font: int) -> list[Box]:
    """Words left to right from ``(x, y)`` (the top of the line) up to ``right``, capital letters
    ``text_height`` px tall; returns their boxes (cap line to descender line)."""
    scale = cv2.getFontScaleFromHeight(font, text_height, 1)
    thickness = max(1, int(round(text_height / 12)))
    boxes = []
    space = max(3, int(0.45 * text_height))
    while True:
        word = _word(rng)
        (w, h), base = cv2.getTextSize(word, font, scale, thickness)
        if x + w > right:
            break
        cv2.putText(image, word, (x, y + h), font, scale, (20, 20, 20), thickness, cv2.LINE_AA)
        boxes.append((x, y, x + w, y + h + base))
        x += w + space
    return boxes


def text_block(image: np.ndarray, box: Box, text_height: int, rng: np.random.Generator, fill: float = 0.8,
               line_gap: float = 1.0) -> list[Box]:
    """Lines of words inside ``box`` (x0, y0, x1, y1), ``fill`` of the line slots used."""
    x0, y0, x1, y1 = box
    font = FONTS[int(rng.integers(len(FONTS)))]
    pitch = int(text_height * (1.6 + line_gap))
    words: list[Box] = []
    for y in range(y0, y1 - pitch, pitch):
        if rng.random() < fill:
            indent = int(rng.integers(0, max(1, (x1 - x0) // 6)))
            words += draw_line(image, x0 + indent, y, x1, text_height, rng, font)
    return words


def text_page(width: int, height: int, text_height: int, *, blocks: int = 1, block_size: tuple[int, int] | None = None,
              seed: int = 0, fill: float = 0.8) -> tuple[np.ndarray, list[Box]]:
    """``(image (height, width, 3) uint8 RGB, word boxes)``: ``blocks`` text blocks of
    ``block_size`` (w, h) pixels (default: the page less a margin, for one block) laid out in a grid
    on an off-white page, words ``text_height`` px tall."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 246, np.uint8)
    cols = int(np.ceil(np.sqrt(blocks)))
    rows = int(np.ceil(blocks / cols))
    cell_w, cell_h = width // cols, height // rows
    bw, bh = block_size if block_size is not None else (int(cell_w * 0.9), int(cell_h * 0.9))
    words: list[Box] = []
    for k in range(blocks):
        r, c = divmod(k, cols)
        x0 = c * cell_w + (cell_w - bw) // 2
        y0 = r * cell_h + (cell_h - bh) // 2
        words += text_block(image, (x0, y0, x0 + bw, y0 + bh), text_height, rng, fill)
    return image, words


def coverage(words: list[Box], detections: list[np.ndarray], share: float = 0.5, tallest: float = 2.5) -> float:
    """The share of ``words`` of which one detection (a ``(K, 2)`` polygon in page pixels) covers at
    least ``share`` of the box's area while being at most ``tallest`` times as tall as the word (the
    short side of its minimum-area rectangle): a blob over several lines covers no word."""
    if not words:
        return 1.0
    covered = 0
    polys = [np.asarray(d, np.float64).reshape(-1, 2) for d in detections]
    heights = [min(cv2.minAreaRect(p.astype(np.float32))[1]) for p in polys]
    bounds = [(p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()) for p in polys]
    for x0, y0, x1, y1 in words:
        area = max(1, (x1 - x0) * (y1 - y0))
        for poly, height, (bx0, by0, bx1, by1) in zip(polys, heights, bounds):
            if bx1 < x0 or bx0 > x1 or by1 < y0 or by0 > y1 or height > tallest * (y1 - y0):
                continue
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(mask, [np.round(poly - (x0, y0)).astype(np.int32)], 1)
            if mask.sum() >= share * area:
                covered += 1
                break
    return covered / len(words)
