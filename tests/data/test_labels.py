"""Label maps (SPEC "Labels") against values computed by hand on simple shapes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synth import random_rects, rotated_rect

from dbcli.data.labels import (
    make_targets,
    offset_polygon,
    polygon_area,
    polygon_perimeter,
    shrink_distance,
    shrink_targets,
    threshold_targets,
)


def square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], np.float64)


SQ = square(50, 50, 100)  # 100x100 square: A = 10000, L = 400
D_SQ = 10000 * (1 - 0.4 ** 2) / 400  # = 21.0, paper eq. 7 with r = 0.4


def thresh_value(d: float, D: float) -> float:
    """Expected threshold target at distance d from the nearest edge (inside or outside)."""
    return 0.3 + 0.4 * min(max(1.0 - d / D, 0.0), 1.0)


def test_area_perimeter_and_shrink_distance_of_a_square():
    assert abs(polygon_area(SQ)) == pytest.approx(10000)
    assert polygon_perimeter(SQ) == pytest.approx(400)
    assert D_SQ == pytest.approx(21.0)
    assert shrink_distance(SQ) == pytest.approx(21.0)
    # rectangle 200x40: D = 8000 * 0.84 / 480 = 14
    assert shrink_distance(rotated_rect(300, 300, 200, 40, 30)) == pytest.approx(14.0)


def test_shrunk_square_is_square_of_side_58():
    pieces = offset_polygon(SQ, -D_SQ)
    assert len(pieces) == 1
    shrunk = pieces[0]
    lo, hi = shrunk.min(0), shrunk.max(0)
    np.testing.assert_allclose(hi - lo, [58, 58], atol=1)  # 100 - 2 * 21
    np.testing.assert_allclose(lo, [71, 71], atol=1)
    assert abs(polygon_area(shrunk)) == pytest.approx(58 * 58, rel=0.04)


def test_shrink_map_of_a_square():
    gt, mask, ignored = shrink_targets([SQ], [False], 200, 200)
    assert gt.dtype == np.float32 and gt.shape == (200, 200)
    assert ignored == [False]
    assert np.all(mask == 1)
    ys, xs = np.nonzero(gt)
    # filled with its boundary: pixels 71..129 in each direction
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (71, 129, 71, 129)
    assert gt.sum() == pytest.approx(59 * 59)
    assert gt[100, 100] == 1 and gt[100, 69] == 0 and gt[100, 131] == 0 and gt[69, 100] == 0


def test_threshold_map_of_a_square():
    thresh, tmask = threshold_targets([SQ], [False], 200, 200)
    assert thresh.dtype == np.float32
    row = 100
    # on the border (x = 50): 0.7; at the centre: 0.3; at distance >= D inside or out: 0.3
    assert thresh[row, 50] == pytest.approx(0.7)
    assert thresh[row, 150] == pytest.approx(0.7)
    assert thresh[row, 100] == pytest.approx(0.3)
    for x in (71, 80, 129, 29, 20, 171, 190):
        assert thresh[row, x] == pytest.approx(0.3, abs=1e-6), x
    # linear in between, the same on both sides of the edge
    for d in range(0, 22):
        assert thresh[row, 50 + d] == pytest.approx(thresh_value(d, D_SQ), abs=1e-5), d
        assert thresh[row, 50 - d] == pytest.approx(thresh_value(d, D_SQ), abs=1e-5), d
    # near a corner, outside: the distance is to the corner point
    assert thresh[40, 40] == pytest.approx(thresh_value(np.hypot(10, 10), D_SQ), abs=1e-5)
    # the threshold mask is the square dilated by D (round corners)
    ys, xs = np.nonzero(tmask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (29, 171, 29, 171)
    assert tmask[100, 29] == 1 and tmask[100, 28] == 0 and tmask[100, 100] == 1
    assert tmask[29, 29] == 0  # outside the rounded corner (distance 29.7 > 21)
    dilated_area = (100 + 2 * 21) ** 2 - (4 - np.pi) * 21 ** 2
    assert tmask.sum() == pytest.approx(dilated_area, rel=0.02)


def test_threshold_half_way_is_exactly_half():
    # 200x200 square: D = 40000 * 0.84 / 800 = 42, so D/2 = 21 px lands on a pixel: target 0.5
    sq = square(100, 100, 200)
    assert shrink_distance(sq) == pytest.approx(42.0)
    thresh, _ = threshold_targets([sq], [False], 400, 400)
    assert thresh[200, 100 + 21] == pytest.approx(0.5)
    assert thresh[200, 100 - 21] == pytest.approx(0.5)
    assert thresh[200, 300 - 21] == pytest.approx(0.5)


def test_threshold_map_takes_the_maximum_over_polygons():
    a, b = square(20, 20, 60), square(90, 20, 60)  # 10 px apart: their dilations overlap
    thresh, _ = threshold_targets([a, b], [False, False], 120, 200)
    D = shrink_distance(a)
    # x = 83: 3 px from a's right edge (x = 80), 7 px from b's left edge (x = 90)
    assert thresh[50, 83] == pytest.approx(thresh_value(3, D), abs=1e-5)
    assert thresh[50, 87] == pytest.approx(thresh_value(3, D), abs=1e-5)


def test_rotated_rectangle_maps():
    rect = rotated_rect(200, 150, 160, 40, 30)
    D = shrink_distance(rect)  # 6400 * 0.84 / 400 = 13.44
    assert D == pytest.approx(13.44)
    t = make_targets([rect], [False], 300, 400)
    # the shrunk region is a 160-2D x 40-2D rectangle
    expected = (160 - 2 * D) * (40 - 2 * D)
    assert t.gt.sum() == pytest.approx(expected, rel=0.15)
    assert t.gt[150, 200] == 1
    assert t.thresh_map[150, 200] == pytest.approx(0.3)  # centre: 20 px > D from every edge
    assert t.thresh_map.min() >= 0.3 - 1e-6 and t.thresh_map.max() <= 0.7 + 1e-6
    # border points get ~0.7 (pixel centres within half a pixel of the edge)
    for corner_a, corner_b in zip(rect, np.roll(rect, -1, axis=0)):
        mid = np.round((corner_a + corner_b) / 2).astype(int)
        assert t.thresh_map[mid[1], mid[0]] > 0.3 + 0.4 * (1 - 0.8 / D)
    assert t.thresh_mask.sum() > t.gt.sum()


def test_dont_care_polygon_zeroes_the_mask():
    care, dont = square(20, 20, 60), square(120, 20, 60)
    t = make_targets([care, dont], [False, True], 120, 200)
    assert t.mask[50, 150] == 0 and t.mask[21, 121] == 0  # inside the don't-care square
    assert t.mask[50, 50] == 1 and t.mask[5, 5] == 1
    assert t.gt[:, 100:].sum() == 0  # no positive target from the don't-care text
    assert t.gt[50, 50] == 1
    # threshold targets: nothing from the don't-care polygon
    assert t.thresh_mask[:, 101:].sum() == 0
    assert np.all(t.thresh_map[:, 105:] == pytest.approx(0.3))
    _, _, ignored = shrink_targets([care, dont], [False, True], 120, 200)
    assert ignored == [False, True]


def test_too_small_text_is_masked_not_learned():
    small = rotated_rect(100, 50, 80, 6, 10)  # shorter side 6 < 8
    ok = rotated_rect(100, 120, 80, 12, 0)
    gt, mask, ignored = shrink_targets([small, ok], [False, False], 200, 200)
    assert ignored == [True, False]
    assert mask[50, 100] == 0 and gt[50, 100] == 0
    assert gt[120, 100] == 1 and mask[120, 100] == 1
    # min_text_size is a parameter
    _, _, ignored = shrink_targets([small], [False], 200, 200, min_text_size=4)
    assert ignored == [False]


@pytest.mark.parametrize("poly, maskable", [
    (np.array([[10, 10], [90, 10], [50, 10], [20, 10]], float), True),  # collinear: zero area
    (np.array([[10, 10], [90, 90]], float), False),  # two points
    (np.array([[10, 10]], float), False),  # one point
    (np.zeros((0, 2)), False),  # no points
    (np.array([[10, 10], [90, 90], [90, 10], [10, 90]], float), True),  # symmetric bow-tie: area 0
    (np.array([[10, 10], [110, 70], [110, 10], [10, 110]], float), True),  # lopsided bow-tie: area > 0
    (np.array([[10, 10], [10, 10], [10, 10], [10, 10]], float), True),  # all points equal
])
def test_degenerate_polygons_do_not_crash_and_are_masked(poly, maskable):
    good = square(130, 130, 50)
    t = make_targets([poly, good], [False, False], 200, 200)
    _, _, ignored = shrink_targets([poly, good], [False, False], 200, 200)
    assert ignored == [True, False]
    assert t.gt[155, 155] == 1  # the good polygon is unaffected
    if len(poly):
        assert t.gt[:120, :120].sum() == 0  # nothing learned from the degenerate one
        assert t.thresh_mask[:105, :105].sum() == 0
    if maskable:
        x0, y0 = poly.min(0).astype(int)
        assert t.mask[y0, x0] == 0  # its pixels are excluded from the loss
    for m in (t.gt, t.mask, t.thresh_map, t.thresh_mask):
        assert np.all(np.isfinite(m))


def test_polygons_outside_or_across_the_border():
    across = square(-30, 40, 80)  # half outside on the left
    outside = square(300, 300, 50)  # entirely outside
    t = make_targets([across, outside], [False, False], 150, 150)
    assert t.gt[80, 10] == 1
    assert t.thresh_map[80, 50] == pytest.approx(0.7)  # right edge of the square at x = 50
    assert np.all(np.isfinite(t.thresh_map))


def test_shrink_ratio_and_thresh_range_are_parameters():
    t = make_targets([SQ], [False], 200, 200, shrink_ratio=0.6, thresh_min=0.2, thresh_max=0.9)
    D = 10000 * (1 - 0.36) / 400  # 16
    ys, xs = np.nonzero(t.gt)
    assert xs.min() == 50 + 16
    assert t.thresh_map[100, 50] == pytest.approx(0.9)
    assert t.thresh_map[100, 100] == pytest.approx(0.2)
    assert t.thresh_map[100, 58] == pytest.approx(0.2 + 0.7 * (1 - 8 / D))


def test_many_random_layouts_are_consistent():
    for seed in range(5):
        polys = random_rects(seed, 640, 480, 10)
        t = make_targets(polys, [False] * len(polys), 480, 640)
        assert set(np.unique(t.gt)) <= {0.0, 1.0} and set(np.unique(t.mask)) == {1.0}
        # every shrunk region lies inside the threshold mask and inside its polygon
        assert np.all(t.thresh_mask[t.gt == 1] == 1)
        # outside the dilated regions the target is thresh_min, up to the rasterisation of G_d's
        # edge (pixels there are at most a pixel or so closer than D to the polygon)
        assert t.thresh_map[t.thresh_mask == 0].max() < 0.4
        assert np.median(t.thresh_map[t.thresh_mask == 0]) == pytest.approx(0.3)
        # one connected shrunk region per polygon (non-overlapping layout)
        n, _ = cv2.connectedComponents(t.gt.astype(np.uint8))
        assert n - 1 == len(polys)
