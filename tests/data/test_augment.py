"""Training augmentation keeps polygons on the pixels they describe."""

import cv2
import numpy as np
import pytest
from synth import random_rects

from dbcli.data.augment import AugmentConfig, augment, choose_crop


def _white_on_black(polygons, width, height):
    image = np.zeros((height, width, 3), np.uint8)
    cv2.fillPoly(image, [np.round(p).astype(np.int32) for p in polygons], (255, 255, 255))
    return image


@pytest.mark.parametrize("seed", range(12))
def test_polygons_follow_the_pixels(seed):
    polygons = random_rects(seed, 640, 400, count=6)
    image = _white_on_black(polygons, 640, 400)
    config = AugmentConfig(crop_size=320, scale_range=(0.3, 2.0))  # includes strong shrinking
    crop, out_polys, out_ignore = augment(image, polygons, [False] * len(polygons),
                                          np.random.default_rng(seed), config)
    assert crop.shape == (320, 320, 3) and crop.dtype == np.uint8
    assert out_polys and len(out_polys) == len(out_ignore)
    drawn = np.zeros((320, 320), np.uint8)
    cv2.fillPoly(drawn, [np.round(p).astype(np.int32) for p in out_polys], 1)
    seen = (crop[:, :, 0] > 127).astype(np.uint8)
    inter = np.logical_and(drawn, seen).sum()
    union = np.logical_or(drawn, seen).sum()
    assert inter / union > 0.85, f"polygons and pixels disagree: IoU {inter / union:.2f}"


def test_deterministic_and_flip_rotation_change_geometry():
    polygons = random_rects(3, 640, 400, count=5)
    image = _white_on_black(polygons, 640, 400)
    a = augment(image, polygons, [False] * 5, np.random.default_rng(7))
    b = augment(image, polygons, [False] * 5, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(p, q) for p, q in zip(a[1], b[1]))
    c = augment(image, polygons, [False] * 5, np.random.default_rng(8))
    assert not np.array_equal(a[0], c[0])


def test_identity_settings_paste_whole_image_top_left():
    polygons = random_rects(5, 320, 200, count=3)
    image = _white_on_black(polygons, 320, 200)
    config = AugmentConfig(crop_size=320, scale_range=(1.0, 1.0), max_angle=0, flip_prob=0, max_tries=0)
    crop, out, _ = augment(image, polygons, [False] * 3, np.random.default_rng(0), config)
    assert np.array_equal(crop[:200], image)  # max_tries=0: whole image, scale 1, top-left
    assert not crop[200:].any()
    for p, q in zip(polygons, out):
        np.testing.assert_allclose(p, q, atol=1e-9)


def test_crop_never_cuts_text():
    polygons = random_rects(11, 800, 600, count=8)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y, w, h = choose_crop(600, 800, polygons, AugmentConfig(), rng)
        for p in polygons:
            inside = (p[:, 0] >= x) & (p[:, 0] <= x + w) & (p[:, 1] >= y) & (p[:, 1] <= y + h)
            outside = (p[:, 0].max() < x or p[:, 0].min() > x + w or p[:, 1].max() < y
                       or p[:, 1].min() > y + h)
            assert inside.all() or outside, "a crop border cuts through a text box"
