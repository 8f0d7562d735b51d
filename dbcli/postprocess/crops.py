"""Text crops: each detected region cut out of the image and rectified, ready for a recogniser.

A 4-point box is perspective-warped to an upright rectangle, so a tilted word comes out horizontal;
a polygon (curved text) is cut along its minimum-area rotated rectangle. A crop at least
``VERTICAL_ASPECT`` times taller than wide is turned a quarter counter-clockwise, so that text
running top to bottom reads left to right (what PaddleOCR does before recognition).

Images and crops are ``(H, W, 3)`` uint8 RGB arrays; points are ``(K, 2)`` (x, y) image pixels. The
crops are written by ``dbcli.outputs.writers.write_crops``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dbcli.postprocess.boxes import mini_box, order_box

VERTICAL_ASPECT = 1.5  # crops this many times taller than wide are turned to read left to right


def crop_corners(points: np.ndarray) -> np.ndarray:
    """The 4 corners ``(4, 2)`` of the region to cut, clockwise from the top-left: a 4-point box's
    own corners (put in that order), else the minimum-area rotated rectangle of a polygon."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 4:
        return order_box(points)
    return mini_box(points)[0]


def crop_region(image: np.ndarray, points: np.ndarray, rotate_vertical: bool = True) -> np.ndarray:
    """The region ``points`` of ``image`` as an upright ``(h, w, 3)`` uint8 crop (module doc): the
    corners from ``crop_corners`` go to the crop's corners (bicubic, edges replicated), the crop's
    width and height being the longer of each pair of opposite sides (at least 1 pixel)."""
    corners = crop_corners(points).astype(np.float32)
    tl, tr, br, bl = corners
    width = max(1, int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))))
    height = max(1, int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    warp = cv2.getPerspectiveTransform(corners, target)
    crop = cv2.warpPerspective(image, warp, (width, height), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)
    if rotate_vertical and height >= VERTICAL_ASPECT * width:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def crop_regions(image: np.ndarray, polygons: Sequence[np.ndarray], rotate_vertical: bool = True
                 ) -> list[np.ndarray]:
    """``crop_region`` of every polygon, in order."""
    return [crop_region(image, p, rotate_vertical) for p in polygons]
