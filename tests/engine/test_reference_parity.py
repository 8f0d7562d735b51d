"""dbcli's fast post-processing and label generation against straightforward reference
implementations in the style of the authors' code (bench/reference.py), on random inputs.

The references run with the switches that mirror dbcli's documented choices (score on the contour,
coordinates rounded rather than truncated before pyclipper, the largest piece of a split unclip,
minimum-area-rectangle text size; see bench/reference.py), so that any difference left is the optimisation's:

- post-processing: the same detections in the same order, IoU > 0.99 each (in fact equal to 1e-6
  px: only the order of the final scaling multiplications differs) and the same scores;
- labels: shrink map, shrink mask and threshold mask exactly equal. The threshold map differs by
  design: dbcli uses the exact point-to-segment distance, the authors a law-of-cosines formula
  that, near the end of an edge, takes the distance to the nearer END POINT even when the pixel
  projects inside the edge. That formula never underestimates, so dbcli's map is >= the
  reference's everywhere (up to float32 rounding); for a rectangle-like quad the overestimate is
  at most ~h^3 / (2 L^2) for a pixel at distance h <= D from an edge of length L, which for a word
  box (D ~ 0.42 x its height) stays under 0.035 in threshold-map units (0.3..0.7 scale); on curved
  polygons with short edges it reaches ~0.11 (checked against shapely's exact distance below).
And bit-for-bit checks of the fast paths against dbcli's own straightforward functions
(``segment_distances``, ``order_box``/``unclip``/``mini_box``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Point, Polygon

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench import synthetic  # noqa: E402
from bench.reference import ref_boxes_from_prob_map, ref_make_targets  # noqa: E402

from dbcli.data import labels  # noqa: E402
from dbcli.postprocess import boxes as postprocess  # noqa: E402
from dbcli.postprocess.boxes import PostConfig, boxes_from_prob_map  # noqa: E402

DBCLI_CONVENTIONS = dict(score_on="contour", round_coords=True, float_out=True, largest_piece=True)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 1.0


def random_maps(count: int, seed: int):
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        h, w = [(320, 480), (256, 640), (480, 352)][i % 3]
        yield synthetic.prob_map(rng, h, w, n_regions=int(rng.integers(5, 40)), curved_fraction=0.3)[0]


def assert_same_detections(ours, ref):
    assert len(ours) == len(ref)
    for det, (points, score) in zip(ours, ref):
        assert det.points.shape == points.shape
        assert iou(det.points, points) > 0.99
        assert np.abs(det.points - points).max() < 1e-6
        assert det.score == pytest.approx(score, abs=1e-9)


@pytest.mark.parametrize("box_thresh,unclip_ratio,min_size", [(0.6, 1.5, 3), (0.3, 2.0, 0), (0.7, 1.0, 5)])
def test_boxes_match_reference(box_thresh, unclip_ratio, min_size):
    total = 0
    for prob in random_maps(12, seed=1):
        h, w = prob.shape
        dest = (int(w * 1.7), int(h * 0.9))  # a non-uniform scale back to the original image
        config = PostConfig(box_thresh=box_thresh, unclip_ratio=unclip_ratio, min_size=min_size)
        ours = boxes_from_prob_map(prob, *dest, config)
        ref = ref_boxes_from_prob_map(prob, *dest, box_thresh=box_thresh, unclip_ratio=unclip_ratio,
                                      min_size=min_size, **DBCLI_CONVENTIONS)
        assert_same_detections(ours, ref)
        total += len(ours)
    assert total > 50  # the maps do exercise the code


def test_polygons_match_reference():
    total = 0
    for prob in random_maps(12, seed=2):
        h, w = prob.shape
        config = PostConfig(polygon=True)
        ours = boxes_from_prob_map(prob, 2 * w, 2 * h, config)
        ref = ref_boxes_from_prob_map(prob, 2 * w, 2 * h, polygon=True, polygon_epsilon=0.002,
                                      polygon_unclip_ratio=config.unclip_ratio, polygon_min_size_first=True,
                                      **DBCLI_CONVENTIONS)
        assert_same_detections(ours, ref)
        total += len(ours)
    assert total > 50


def test_authors_box_score_is_what_differs():
    """With the authors' own settings (score on the quad, truncated coordinates, integer output) the
    reference keeps a subset of dbcli's regions (the quad's mean includes the blurred border, so it
    is lower) and its boxes sit within a pixel or two of dbcli's."""
    for prob in random_maps(6, seed=3):
        h, w = prob.shape
        ours = boxes_from_prob_map(prob, w, h)
        authors = ref_boxes_from_prob_map(prob, w, h, box_thresh=0.6)
        assert len(authors) <= len(ours)
        for points, _ in authors:
            best = max((iou(points, d.points) for d in ours), default=0.0)
            assert best > 0.8


def label_cases(count: int, seed: int, size: int, curved: float):
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        yield synthetic.crop_polygons(rng, size=size, n=int(rng.integers(1, 12)), curved_fraction=curved)


@pytest.mark.parametrize("curved,tolerance", [(0.0, 0.035), (1.0, 0.12)])
def test_labels_match_reference(curved, tolerance):
    size = 320
    worst = 0.0
    for polygons, ignore in label_cases(10, seed=4 + int(curved), size=size, curved=curved):
        ours = labels.make_targets(polygons, ignore, size, size)
        gt, mask, thresh_map, thresh_mask = ref_make_targets(polygons, ignore, size, size, size_on="rect",
                                                             round_coords=True)
        np.testing.assert_array_equal(ours.gt, gt)
        np.testing.assert_array_equal(ours.mask, mask)
        np.testing.assert_array_equal(ours.thresh_mask, thresh_mask)
        diff = ours.thresh_map - thresh_map
        assert diff.min() >= -1e-6  # exact distance <= law-of-cosines distance
        assert diff.max() <= tolerance
        assert np.abs(diff).mean() < 0.005
        worst = max(worst, float(diff.max()))
    assert worst > 0  # the approximation does show up


def test_threshold_map_is_the_exact_distance():
    """Where dbcli and the authors' formula disagree most, dbcli has the exact (shapely) value."""
    size = 320
    polygons, ignore = next(label_cases(1, seed=11, size=size, curved=1.0))
    ignore = [False] * len(polygons)
    ours = labels.make_targets(polygons, ignore, size, size)
    _, _, ref, _ = ref_make_targets(polygons, ignore, size, size, size_on="rect", round_coords=True)
    y, x = np.unravel_index(np.argmax(ours.thresh_map - ref), ref.shape)
    values = []
    for p, ign in zip(polygons, ours_effective(polygons, ignore, size)):
        if ign:
            continue
        shape = Polygon(p)
        d = shape.area * (1 - 0.4 ** 2) / shape.length
        values.append(np.clip(1 - shape.exterior.distance(Point(x, y)) / d, 0, 1))
    assert ours.thresh_map[y, x] == pytest.approx(max(values) * 0.4 + 0.3, abs=1e-5)


def ours_effective(polygons, ignore, size):
    return labels.shrink_targets(polygons, ignore, size, size)[2]


def test_border_values_equal_segment_distances_bit_for_bit():
    """The per-edge windowed distance of ``threshold_targets`` = the full ``segment_distances``."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        k = int(rng.choice([4, 4, 4, 6, 14]))
        poly = rng.uniform(-20, 120, (k, 2))
        if rng.random() < 0.3:
            poly = np.round(poly)
        distance = float(rng.uniform(0.5, 30))
        x0, y0 = int(rng.integers(-10, 40)), int(rng.integers(-10, 40))
        x1, y1 = x0 + int(rng.integers(0, 90)), y0 + int(rng.integers(0, 90))
        x0, y0 = max(x0, 0), max(y0, 0)
        if x1 < x0 or y1 < y0:
            continue
        dist = labels.segment_distances(np.arange(x0, x1 + 1, dtype=np.float64),
                                        np.arange(y0, y1 + 1, dtype=np.float64), poly)
        expected = np.clip(1.0 - dist / distance, 0.0, 1.0).astype(np.float32)
        np.testing.assert_array_equal(labels._border_values(poly, distance, x0, y0, x1, y1), expected)


def test_box_fast_path_equals_public_helpers_bit_for_bit():
    rng = np.random.default_rng(6)
    for _ in range(500):
        rect = ((float(rng.uniform(0, 1000)), float(rng.uniform(0, 700))),
                (float(rng.uniform(0.5, 300)), float(rng.uniform(0.5, 60))), float(rng.uniform(-90, 90)))
        box = postprocess.order_box(cv2.boxPoints(rect).astype(np.float64))
        corners = postprocess._corners(rect)
        np.testing.assert_array_equal(np.array(corners), box)
        ratio = float(rng.choice([1.0, 1.5, 2.0]))
        slow = postprocess.unclip(box, ratio)
        fast = postprocess._unclip_quad(corners, ratio)
        if slow is None:
            assert fast is None
            continue
        np.testing.assert_array_equal(fast, slow.astype(np.float32))
        assert cv2.minAreaRect(fast) == cv2.minAreaRect(slow.astype(np.float32))


def test_int_contour_min_area_rect_equals_float():
    """The box path calls minAreaRect on the int32 contour (no float copy): same rectangle."""
    for prob in random_maps(6, seed=7):
        contours, _ = cv2.findContours((prob > 0.3).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            assert cv2.minAreaRect(c) == cv2.minAreaRect(c.reshape(-1, 2).astype(np.float32))
