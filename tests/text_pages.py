"""Rendered pages with known text for the ``--text`` tests: black words on white drawn with PIL
(DejaVu Sans where installed), one line of text per entry of ``lines``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
PAGE_LINES = ["Invoice 4471", "TOTAL 12.50", "Thank you"]


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(DEJAVU), size) if DEJAVU.exists() else ImageFont.load_default(size=size)


def text_page(lines: list[str] = PAGE_LINES, size: int = 32, width: int = 480, gap: int = 40) -> Image.Image:
    """A white RGB page with ``lines`` written top to bottom at ``size`` px, left margin 30 px."""
    height = 40 + len(lines) * (size + gap)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((30, 30 + k * (size + gap)), line, fill="black", font=font(size))
    return image


def text_page_array(lines: list[str] = PAGE_LINES, size: int = 32) -> np.ndarray:
    """``text_page`` as an ``(H, W, 3)`` uint8 RGB array."""
    return np.array(text_page(lines, size))
