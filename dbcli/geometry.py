"""Polygon geometry shared by the training labels (``dbcli.data.labels``) and post-processing
(``dbcli.postprocess.boxes``): area, perimeter and the Vatti offset. Polygons are ``(K, 2)`` arrays of
(x, y) pixel coordinates."""

from __future__ import annotations

import numpy as np
import pyclipper


def polygon_area(poly: np.ndarray) -> float:
    """Signed shoelace area of ``(K, 2)`` points (positive when counter-clockwise in y-up axes)."""
    x, y = poly[:, 0], poly[:, 1]
    # np.concatenate((a[1:], a[:1])) is np.roll(a, -1) without its overhead (hot in post-processing).
    return 0.5 * float(np.dot(x, np.concatenate((y[1:], y[:1]))) - np.dot(np.concatenate((x[1:], x[:1])), y))


def polygon_perimeter(poly: np.ndarray) -> float:
    d = poly - np.concatenate((poly[1:], poly[:1]))
    if d.dtype.kind != "f":
        d = d.astype(np.float64)
    return float(np.sqrt(np.add.reduce(d * d, axis=1)).sum())  # = np.linalg.norm(d, axis=1).sum()


def offset_polygon(poly: np.ndarray, distance: float) -> list[np.ndarray]:
    """Vatti offset (pyclipper, round joins): positive grows, negative shrinks. Returns pieces."""
    pco = pyclipper.PyclipperOffset()
    pco.AddPath(np.round(poly).astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    try:
        pieces = pco.Execute(distance)
    except pyclipper.ClipperException:
        return []
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in pieces if len(p) >= 3]
