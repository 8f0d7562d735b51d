"""Synthetic text layouts and images for the tests (deterministic given a seed).

Polygons are float64 arrays ``(K, 2)`` of (x, y) pixel coordinates, listed clockwise on screen
(y down) like ICDAR ground truth. Images are ``(H, W, 3)`` uint8 RGB. The API:

- ``rotated_rect(cx, cy, w, h, angle)``: one rotated rectangle, clockwise from its top-left corner.
- ``curved_band(cx, cy, length, height, ...)``: one curved text-like band (arc or sine) polygon.
- ``random_rects(seed, width, height, count)``: non-overlapping rotated rectangles (text lines of
  height 16-60 px and aspect ratio 1-8 by default).
- ``random_curves(seed, width, height, count)``: non-overlapping curved bands of 10-20 points.
- ``render(polygons, width, height, seed, style)``: an image with filled shapes (``style="shapes"``)
  or rendered words (``style="text"``, OpenCV Hershey fonts) at the polygons, on a random background.
- ``synthetic_image(seed, ...)``: ``(image, polygons)`` in one call.

Layouts keep every polygon at least ``margin`` pixels inside the image and ``gap`` pixels away from
the others, so that neither the shrunk, the dilated nor the unclipped regions touch each other or
the border.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from shapely.geometry import Polygon

__all__ = ["rotated_rect", "curved_band", "random_rects", "random_curves", "render", "synthetic_image",
           "WORDS"]

WORDS = ("OPEN", "SALE", "Exit", "hello", "DBNet", "2024", "Cafe", "text", "STOP", "Main St", "No. 42",
         "PUSH", "river", "Hotel", "TAXI", "menu", "gate 7", "Bank", "ok", "Zoo")


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def rotated_rect(cx: float, cy: float, w: float, h: float, angle: float = 0.0) -> np.ndarray:
    """Rectangle of width ``w`` (along the text) and height ``h`` centred at (cx, cy), rotated by
    ``angle`` degrees (positive turns the text clockwise on screen, as y points down). Corners in
    order top-left, top-right, bottom-right, bottom-left of the unrotated text."""
    a = math.radians(angle)
    ux, uy = math.cos(a), math.sin(a)  # along the text
    vx, vy = -uy, ux  # down the text
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return np.array([(cx + s * ux + t * vx, cy + s * uy + t * vy) for s, t in corners], np.float64)


def curved_band(cx: float, cy: float, length: float, height: float, kind: str = "arc",
                bend: float = 0.5, angle: float = 0.0, points_per_side: int = 7) -> np.ndarray:
    """A band of ``height`` around a curved centre line of arc length ~``length`` centred at (cx, cy).

    ``kind="arc"``: a circular arc whose direction turns by ``bend`` radians over ``length`` (keep
    ``|bend| < 2 * length / height`` or the inner side folds over); ``kind="sine"``: one sine period
    of amplitude ``bend * height``. The polygon has
    ``2 * points_per_side`` points: the top side left to right, then the bottom side right to left.
    """
    t = np.linspace(-0.5, 0.5, points_per_side)
    if kind == "arc":
        phi = t * bend  # direction of the centre line; it turns by `bend` over the length
        if abs(bend) < 1e-9:
            centre = np.stack([t * length, np.zeros_like(t)], 1)
        else:
            radius = length / bend  # signed
            centre = np.stack([radius * np.sin(phi), radius * (1 - np.cos(phi))], 1)
        tangent = np.stack([np.cos(phi), np.sin(phi)], 1)
    elif kind == "sine":
        amp = bend * height
        centre = np.stack([t * length, amp * np.sin(2 * math.pi * t)], 1)
        tangent = np.stack([np.ones_like(t), amp * 2 * math.pi / length * np.cos(2 * math.pi * t)], 1)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    else:
        raise ValueError(f"kind must be 'arc' or 'sine', not {kind!r}")
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)  # points down the text (y is down)
    top = centre - normal * height / 2
    bottom = centre + normal * height / 2
    poly = np.concatenate([top, bottom[::-1]])
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return poly @ rot.T + (cx, cy)


def _place(rng: np.random.Generator, make, width: int, height: int, count: int, gap: float,
           margin: float, tries: int) -> list[np.ndarray]:
    """Rejection sampling: ``make(rng)`` proposes a polygon centred at the origin."""
    placed: list[np.ndarray] = []
    shapes: list[Polygon] = []
    for _ in range(tries):
        if len(placed) == count:
            break
        poly = make(rng)
        lo, hi = poly.min(0), poly.max(0)
        if np.any(hi - lo + 2 * margin >= (width, height)):
            continue
        cx = rng.uniform(margin - lo[0], width - margin - hi[0])
        cy = rng.uniform(margin - lo[1], height - margin - hi[1])
        poly = poly + (cx, cy)
        shape = Polygon(poly)
        if not shape.is_valid:
            continue
        grown = shape.buffer(gap)
        if any(grown.intersects(s) for s in shapes):
            continue
        placed.append(poly)
        shapes.append(shape)
    return placed


def random_rects(seed, width: int = 640, height: int = 480, count: int = 10, min_height: float = 16,
                 max_height: float = 60, max_aspect: float = 8.0, max_angle: float = 45.0,
                 gap: float = 8.0, margin: float = 12.0) -> list[np.ndarray]:
    """Up to ``count`` non-overlapping rotated rectangles: height uniform in [min_height, max_height],
    width/height uniform in [1, max_aspect], angle uniform in [-max_angle, max_angle] degrees.
    Fewer come back only when the image is too crowded to place them."""
    rng = _rng(seed)

    def make(r):
        h = r.uniform(min_height, max_height)
        w = h * r.uniform(1.0, max_aspect)
        return rotated_rect(0.0, 0.0, w, h, r.uniform(-max_angle, max_angle))

    return _place(rng, make, width, height, count, gap, margin, tries=200 * count)


def random_curves(seed, width: int = 640, height: int = 480, count: int = 6, min_height: float = 20,
                  max_height: float = 50, min_aspect: float = 3.0, max_aspect: float = 8.0,
                  gap: float = 10.0, margin: float = 16.0) -> list[np.ndarray]:
    """Up to ``count`` non-overlapping curved bands (arcs bending up to ~100 degrees over their
    length, or sine waves), each with 10-20 points, rotated by up to 30 degrees."""
    rng = _rng(seed)

    def make(r):
        h = r.uniform(min_height, max_height)
        length = h * r.uniform(min_aspect, max_aspect)
        n = int(r.integers(5, 11))  # 10-20 points in all
        if r.random() < 0.6:
            # keep the inner radius above the half height: no self-intersection
            bend = r.choice([-1, 1]) * min(r.uniform(0.6, 1.8), 0.9 * length / h)
            return curved_band(0, 0, length, h, "arc", bend, r.uniform(-30, 30), n)
        # amplitude small enough that the sharpest turn has a radius above the height
        amp = min(r.uniform(0.3, 0.8), (length / h) ** 2 / 40.0)
        return curved_band(0, 0, length, h, "sine", amp, r.uniform(-30, 30), n)

    return _place(rng, make, width, height, count, gap, margin, tries=200 * count)


def _background(rng: np.random.Generator, width: int, height: int, kind: str) -> np.ndarray:
    if kind == "flat":
        return np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    if kind == "gradient":
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xx * math.cos(a) + yy * math.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        return (c0 + (c1 - c0) * t[..., None]).clip(0, 255).astype(np.uint8)
    if kind == "noise":
        base = rng.uniform(40, 215, 3)
        noise = rng.normal(0, 25, (height, width, 1))
        return (base + noise).clip(0, 255).astype(np.uint8)
    if kind == "texture":
        small = rng.uniform(0, 255, (max(height // 16, 2), max(width // 16, 2), 3)).astype(np.float32)
        smooth = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        grain = rng.normal(0, 10, (height, width, 1))
        return (0.6 * smooth + 50 + grain).clip(0, 255).astype(np.uint8)
    raise ValueError(f"unknown background {kind!r}")


def _contrast_colour(rng: np.random.Generator, image: np.ndarray, poly: np.ndarray) -> tuple:
    x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int), 0)
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
    mean = image[y0:y1, x0:x1].reshape(-1, 3).mean(0) if image[y0:y1, x0:x1].size else np.full(3, 128.0)
    colour = np.where(mean > 127, rng.uniform(0, 50, 3), rng.uniform(205, 255, 3))
    return tuple(int(c) for c in colour)


def _draw_word(image: np.ndarray, quad: np.ndarray, word: str, colour: tuple, font: int) -> None:
    """Draw ``word`` stretched to fill the quadrilateral ``quad`` (tl, tr, br, bl)."""
    (tw, th), base = cv2.getTextSize(word, font, 1.0, 2)
    thickness = 2
    canvas_h = th + base + 2 * thickness
    canvas = np.zeros((canvas_h, tw + 2 * thickness), np.uint8)
    cv2.putText(canvas, word, (thickness, th + thickness), font, 1.0, 255, thickness, cv2.LINE_AA)
    # crop the ink, then map the ink's box onto the quad (text fills its box as in ICDAR labels)
    ys, xs = np.nonzero(canvas)
    if len(xs) == 0:
        return
    canvas = canvas[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    ch, cw = canvas.shape
    src = np.float32([[0, 0], [cw, 0], [cw, ch]])
    dst = np.float32([quad[0], quad[1], quad[2]])
    m = cv2.getAffineTransform(src, dst)
    ink = cv2.warpAffine(canvas, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR)
    alpha = ink.astype(np.float32)[..., None] / 255.0
    image[:] = (image * (1 - alpha) + np.array(colour, np.float32) * alpha).round().astype(np.uint8)


def render(polygons: list[np.ndarray], width: int, height: int, seed=0, style: str = "shapes",
           background: str | None = None) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 RGB image with something drawn exactly at each polygon.

    ``style="shapes"``: each polygon filled with a colour that contrasts with the background.
    ``style="text"``: a random word stretched over each 4-point polygon (tl, tr, br, bl); polygons
    with more points are filled as in ``"shapes"``. ``background``: ``"flat"``, ``"gradient"``,
    ``"noise"`` or ``"texture"``; random when None.
    """
    rng = _rng(seed)
    kinds = ("flat", "gradient", "noise", "texture")
    image = _background(rng, width, height, background or kinds[int(rng.integers(len(kinds)))])
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
             cv2.FONT_HERSHEY_TRIPLEX)
    for poly in polygons:
        poly = np.asarray(poly, np.float64)
        colour = _contrast_colour(rng, image, poly)
        if style == "text" and len(poly) == 4:
            word = WORDS[int(rng.integers(len(WORDS)))]
            _draw_word(image, poly, word, colour, fonts[int(rng.integers(len(fonts)))])
        elif style in ("text", "shapes"):
            # shift=4: sub-pixel vertices, so the fill matches the float polygon closely
            cv2.fillPoly(image, [np.round(poly * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
        else:
            raise ValueError(f"style must be 'shapes' or 'text', not {style!r}")
    return image


def synthetic_image(seed, width: int = 640, height: int = 480, count: int = 8, curved: bool = False,
                    style: str = "shapes", background: str | None = None
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(image, polygons)``: a random layout (``random_rects`` or, with ``curved``,
    ``random_curves``) rendered with ``render``."""
    rng = _rng(seed)
    layout = random_curves if curved else random_rects
    polygons = layout(rng, width, height, count)
    return render(polygons, width, height, rng, style, background), polygons
