"""Generated large pages with known word boxes (no font files, no downloads): the inputs of
``bench/bench_scale.py`` and ``tests/engine/test_scale.py`` (coverage of small text on big pages, cost,
memory).

``text_page(width, height, text_height, ...)`` renders lines of words in OpenCV's built-in fonts,
black on an off-white page, into ``blocks`` rectangles of the page (a form or a column of text each;
``fill`` of each block's rows are lines, the rest blank) and returns the image with every word's
axis-aligned box ``(x0, y0, x1, y1)`` in page pixels.

Real-looking layouts: ``form`` (a title, rows of boxed fields with small labels and filled-in
values, ruled answer lines, checkboxes), ``table`` (a ruled grid of short entries), ``paragraphs``
(dense columns of text under a heading), each a document of any size and text height
(``document``); ``canvas`` (a scanner's blank white, a wood-like desk, a mottled grey lid) and
``place`` (a document pasted on it, with a drop shadow for a photographed page); ``layout_page``
builds a page from a spec of both (a small document on a big canvas, several documents on one page).

Scores, from the word boxes (the oracle): ``coverage(words, detections)``: the share of the words
covered by detections (a word is covered when one detection no more than 2.5x its height covers
>= 50% of its box: blobs over several lines do not count); ``precision(words, detections)``: the
share of the detections that hold a word's centre and are no more than 2.5x that word's height
(blobs, ruled lines and desk texture count as wrong).
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


# --- real-looking layouts -------------------------------------------------------------------------
# Each generator returns ``(image (H, W, 3) uint8 RGB, word boxes)``; the boxes are the oracle of
# ``coverage`` and ``precision``. Lines and boxes drawn in ink are not words.
INK = (25, 25, 30)


def _rule(image: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], width: int) -> None:
    cv2.line(image, p0, p1, INK, max(1, width), cv2.LINE_8)


def form(width: int, height: int, text_height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """A form on white paper: a title, then rows of boxed fields (a label in small text in the top
    left of each box, a filled-in value in some), ruled answer lines, a column of checkboxes with
    labels; ruled boxes a stroke ``text_height / 8`` wide."""
    image = np.full((height, width, 3), 250, np.uint8)
    t, stroke = text_height, max(1, text_height // 8)
    font = FONTS[int(rng.integers(len(FONTS)))]
    margin = 3 * t
    words = draw_line(image, margin, margin, width // 2, int(t * 1.8), rng, font)  # title
    y = margin + 4 * t
    while y + 4 * t < height - margin:
        kind = rng.random()
        if kind < 0.6:  # a row of boxed fields
            cuts = np.sort(rng.choice(np.arange(margin + 6 * t, width - margin - 6 * t), int(rng.integers(1, 4)),
                                      replace=False))
            xs = [margin, *[int(c) for c in cuts], width - margin]
            row_h = int(t * rng.uniform(3.2, 4.5))
            for a, b in zip(xs, xs[1:]):
                cv2.rectangle(image, (a, y), (b, y + row_h), INK, stroke)
                words += draw_line(image, a + t // 2, y + t // 3, b - t // 2, max(4, int(t * 0.7)), rng, font)
                if rng.random() < 0.7:
                    words += draw_line(image, a + t, y + int(1.6 * t), min(b - t, a + int((b - a) * 0.8)), t, rng,
                                       font)
            y += row_h
        elif kind < 0.8:  # label + ruled answer line
            label = draw_line(image, margin, y + t, margin + 10 * t, t, rng, font)
            words += label
            start = (label[-1][2] if label else margin) + t
            _rule(image, (start, y + 2 * t + 2), (width - margin, y + 2 * t + 2), stroke)
            y += 3 * t
        else:  # checkboxes
            for k in range(int(rng.integers(2, 5))):
                x = margin + k * (width - 2 * margin) // 4
                cv2.rectangle(image, (x, y + t // 4), (x + t, y + 5 * t // 4), INK, stroke)
                words += draw_line(image, x + 2 * t, y, x + (width - 2 * margin) // 4 - t, t, rng, font)
            y += 2 * t
        y += int(t * rng.uniform(0.3, 1.0))
    return image, words


def table(width: int, height: int, text_height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """A ruled table filling the page: a header row, then rows of cells each holding a short entry
    (one to three words) ``text_height`` px tall, grid lines between them."""
    image = np.full((height, width, 3), 252, np.uint8)
    t, stroke = text_height, max(1, text_height // 10)
    font = FONTS[int(rng.integers(len(FONTS)))]
    margin = 2 * t
    cols = int(np.clip((width - 2 * margin) // (9 * t), 2, 12))
    col_w = (width - 2 * margin) // cols
    row_h = int(2.2 * t)
    rows = (height - 2 * margin) // row_h
    words: list[Box] = []
    for r in range(rows):
        y = margin + r * row_h
        _rule(image, (margin, y), (margin + cols * col_w, y), stroke * (2 if r in (0, 1) else 1))
        for c in range(cols):
            if r > 0 and rng.random() < 0.1:
                continue  # an empty cell
            x = margin + c * col_w
            right = x + min(col_w - t // 2, int(t * rng.uniform(3, 9)))
            words += draw_line(image, x + t // 2, y + int(0.5 * t), right, t, rng, font)
    bottom = margin + rows * row_h
    _rule(image, (margin, bottom), (margin + cols * col_w, bottom), stroke)
    for c in range(cols + 1):
        _rule(image, (margin + c * col_w, margin), (margin + c * col_w, bottom), stroke)
    return image, words


def paragraphs(width: int, height: int, text_height: int, rng: np.random.Generator,
               columns: int = 2) -> tuple[np.ndarray, list[Box]]:
    """Dense justified-looking paragraphs in ``columns`` columns: lines ``1.45 x text_height`` apart,
    a blank line between paragraphs, a heading twice as tall on top."""
    image = np.full((height, width, 3), 248, np.uint8)
    t = text_height
    font = FONTS[int(rng.integers(len(FONTS)))]
    margin, gutter = 3 * t, 2 * t
    words = draw_line(image, margin, margin, width - margin, 2 * t, rng, font)
    col_w = (width - 2 * margin - (columns - 1) * gutter) // columns
    pitch = int(t * 1.45) + 2
    for c in range(columns):
        x = margin + c * (col_w + gutter)
        y = margin + 4 * t
        while y + pitch < height - margin:
            for _ in range(int(rng.integers(3, 9))):
                if y + pitch >= height - margin:
                    break
                words += draw_line(image, x, y, x + col_w, t, rng, font)
                y += pitch
            y += pitch
    return image, words


def canvas(width: int, height: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width, 3)`` background: ``"blank"`` (a scanner's white), ``"desk"`` (a wood-like
    brown with grain and a light gradient: a photographed page lying on a desk) or ``"grey"`` (a
    scanner lid's mottled grey). Textures are drawn small and enlarged (cheap at 12000 px)."""
    if kind == "blank":
        return np.full((height, width, 3), 253, np.uint8)
    small_w, small_h = max(8, width // 16), max(8, height // 16)
    noise = rng.normal(0, 1, (small_h, small_w)).astype(np.float32)
    if kind == "desk":  # grain: noise stretched along x, plus a gradient
        grain = cv2.GaussianBlur(noise, (0, 0), sigmaX=12, sigmaY=0.8)
        grain = grain / (np.abs(grain).max() + 1e-6)
        ramp = np.linspace(0.85, 1.1, small_w, dtype=np.float32)[None, :]
        base = np.array([120, 85, 55], np.float32)
        small = base[None, None, :] * (ramp + 0.18 * grain)[:, :, None]
    else:
        blot = cv2.GaussianBlur(noise, (0, 0), 4)
        small = (190 + 60 * blot / (np.abs(blot).max() + 1e-6))[:, :, None].repeat(3, axis=2)
    return cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)


def place(background: np.ndarray, doc: np.ndarray, words: list[Box], x: int, y: int,
          shadow: bool = False) -> list[Box]:
    """``doc`` pasted into ``background`` at ``(x, y)`` (in place; with a soft drop shadow when
    ``shadow``); returns its word boxes in background pixels."""
    h, w = doc.shape[:2]
    if shadow:
        d = max(4, w // 80)
        region = background[y + d:y + h + d, x + d:x + w + d]  # (cut at the canvas's edges)
        region[:] = (region.astype(np.float32) * 0.55).astype(np.uint8)
    background[y:y + h, x:x + w] = doc
    return [(a + x, b + y, c + x, e + y) for a, b, c, e in words]


DOCUMENTS = {"form": form, "table": table, "paragraphs": paragraphs}


def document(kind: str, width: int, height: int, text_height: int, seed: int) -> tuple[np.ndarray, list[Box]]:
    """One document of ``DOCUMENTS`` (``form``, ``table``, ``paragraphs``), ``width`` x ``height`` px
    with text ``text_height`` px tall (capitals)."""
    return DOCUMENTS[kind](width, height, text_height, np.random.default_rng(seed))


def layout_page(spec: dict) -> tuple[np.ndarray, list[Box]]:
    """A page from ``spec``: ``canvas`` (w, h) and its ``background`` (``canvas`` kinds), and
    ``docs``: a list of ``(kind, (w, h), text_height, (x, y))`` documents placed on it (``x``, ``y``
    as fractions of the room left around the document); ``shadow`` for photographed pages; ``seed``."""
    rng = np.random.default_rng(spec.get("seed", 0))
    cw, ch = spec["canvas"]
    image = canvas(cw, ch, spec.get("background", "blank"), rng)
    words: list[Box] = []
    for k, (kind, (w, h), text_height, (fx, fy)) in enumerate(spec["docs"]):
        doc, doc_words = document(kind, w, h, text_height, spec.get("seed", 0) * 100 + k)
        x, y = int(fx * max(0, cw - w)), int(fy * max(0, ch - h))
        words += place(image, doc, doc_words, x, y, spec.get("shadow", False))
    return image, words


def precision(words: list[Box], detections: list[np.ndarray], tallest: float = 2.5) -> float:
    """The share of ``detections`` that lie on text: the centre of at least one word inside, and
    at most ``tallest`` times that word's height (a blob over several lines, a ruled line or the
    texture of a desk count as wrong). 1.0 when there are no detections."""
    if not detections:
        return 1.0
    centres = np.array([((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in words], np.float32).reshape(-1, 2)
    word_h = np.array([y1 - y0 for _, y0, _, y1 in words], np.float32)
    good = 0
    for det in detections:
        poly = np.asarray(det, np.float32).reshape(-1, 1, 2)
        height = min(cv2.minAreaRect(poly)[1])
        x0, y0 = poly[:, 0].min(axis=0)
        x1, y1 = poly[:, 0].max(axis=0)
        near = np.flatnonzero((centres[:, 0] >= x0) & (centres[:, 0] <= x1) & (centres[:, 1] >= y0)
                              & (centres[:, 1] <= y1) & (height <= tallest * word_h))
        good += any(cv2.pointPolygonTest(poly, (float(centres[k, 0]), float(centres[k, 1])), False) >= 0
                    for k in near)
    return good / len(detections)
