"""The ICDAR 2015 IoU protocol (SPEC "Evaluation") on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from dbcli.evaluation.metrics import evaluate, evaluate_image, summarize, to_polygon


def box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


A, B, C = box(0, 0, 100, 20), box(0, 50, 100, 70), box(200, 0, 260, 30)


def test_perfect():
    r = evaluate_image([A, B, C], [False] * 3, [C, A, B])
    assert (r.num_gt, r.num_det, r.num_matched) == (3, 3, 3)
    assert sorted(r.matches) == [(0, 1), (1, 2), (2, 0)]
    s = summarize([r])
    assert (s.precision, s.recall, s.hmean) == (1.0, 1.0, 1.0)
    assert s.num_images == 1


def test_iou_threshold_is_strictly_above_half():
    # det covers the left 3/4 of A: IoU 0.75
    assert evaluate_image([A], [False], [box(0, 0, 75, 20)]).num_matched == 1
    # exactly half of A: IoU 0.5 is not > 0.5
    assert evaluate_image([A], [False], [box(0, 0, 50, 20)]).num_matched == 0
    # shifted so that IoU = 60 / 140 < 0.5
    assert evaluate_image([A], [False], [box(40, 0, 140, 20)]).num_matched == 0
    # shifted by 30: IoU = 70 / 130 > 0.5
    assert evaluate_image([A], [False], [box(30, 0, 130, 20)]).num_matched == 1
    # the threshold is a parameter
    assert evaluate_image([A], [False], [box(30, 0, 130, 20)], iou_threshold=0.6).num_matched == 0


def test_empty_cases():
    nothing = summarize([evaluate_image([], [], [])])
    assert (nothing.num_gt, nothing.num_det, nothing.num_matched) == (0, 0, 0)
    assert nothing.hmean == 1.0  # nothing to find and nothing found: perfect
    no_det = summarize([evaluate_image([A, B], [False, False], [])])
    assert (no_det.precision, no_det.recall, no_det.hmean) == (0.0, 0.0, 0.0)
    assert no_det.num_gt == 2
    no_gt = summarize([evaluate_image([], [], [A])])
    assert (no_gt.precision, no_gt.recall, no_gt.hmean) == (0.0, 0.0, 0.0)
    assert no_gt.num_det == 1
    assert summarize([]).num_images == 0


def test_one_miss():
    s = evaluate([([A, B, C], [False] * 3, [A, B])])
    assert (s.num_gt, s.num_det, s.num_matched) == (3, 2, 2)
    assert s.precision == 1.0 and s.recall == pytest.approx(2 / 3)
    assert s.hmean == pytest.approx(0.8)


def test_one_false_alarm():
    s = evaluate([([A, B], [False] * 2, [A, B, box(300, 300, 340, 320)])])
    assert (s.num_gt, s.num_det, s.num_matched) == (2, 3, 2)
    assert s.precision == pytest.approx(2 / 3) and s.recall == 1.0
    assert s.hmean == pytest.approx(0.8)


def test_dont_care_ground_truth_is_neither_missed_nor_matched():
    r = evaluate_image([A, B], [False, True], [A])
    assert (r.num_gt, r.num_det, r.num_matched) == (1, 1, 1)
    # a detection on the don't-care region is dropped, not a false alarm
    r = evaluate_image([A, B], [False, True], [A, B])
    assert (r.num_gt, r.num_det, r.num_matched) == (1, 1, 1)
    assert summarize([r]).hmean == 1.0


def test_detection_mostly_inside_dont_care_is_dropped():
    care, dont = box(0, 0, 100, 20), box(200, 0, 300, 40)
    mostly_inside = box(180, 0, 280, 40)  # 80 % of its area inside the don't-care box
    r = evaluate_image([care, dont], [False, True], [care, mostly_inside])
    assert (r.num_gt, r.num_det, r.num_matched) == (1, 1, 1)
    # a small detection entirely inside (IoU with the don't-care box far below 0.5): dropped too
    r = evaluate_image([care, dont], [False, True], [care, box(210, 10, 230, 20)])
    assert r.num_det == 1
    # mostly outside (40 % inside): counts, as a false alarm
    r = evaluate_image([care, dont], [False, True], [care, box(140, 0, 240, 40)])
    assert (r.num_gt, r.num_det, r.num_matched) == (1, 2, 1)
    # the area fraction is a parameter
    r = evaluate_image([care, dont], [False, True], [care, box(140, 0, 240, 40)], area_precision=0.3)
    assert r.num_det == 1


def test_dont_care_coverage_is_per_region_as_in_the_official_script():
    # two adjacent don't-care boxes, a detection 40 % inside each: no single region holds more than
    # half of it, so the official script keeps it (a false alarm)
    left, right = box(0, 0, 50, 20), box(50, 0, 100, 20)
    det = box(10, 0, 90, 20)
    r = evaluate_image([left, right], [True, True], [det])
    assert (r.num_gt, r.num_det, r.num_matched) == (0, 1, 0)
    # overlapping don't-care regions must not be counted twice
    r = evaluate_image([box(0, 0, 100, 20), box(0, 0, 100, 20)], [True, True], [box(60, 0, 160, 20)])
    assert r.num_det == 1


def test_one_to_one_matching():
    # two detections over one ground truth: one match, the other is a false alarm
    r = evaluate_image([A], [False], [box(0, 0, 95, 20), box(2, 0, 100, 20)])
    assert (r.num_gt, r.num_det, r.num_matched) == (1, 2, 1)
    assert r.matches == [(0, 0)]
    # one detection over two ground truths: only one of them is found
    wide = box(0, 0, 100, 45)
    r = evaluate_image([box(0, 0, 100, 40), box(0, 5, 100, 45)], [False, False], [wide])
    assert (r.num_gt, r.num_det, r.num_matched) == (2, 1, 1)
    # greedy in ground-truth then detection order, as the official script
    r = evaluate_image([A, B], [False, False], [B, A, A])
    assert sorted(r.matches) == [(0, 1), (1, 0)]


def test_totals_over_images_not_mean_of_ratios():
    img1 = ([A, B, C], [False] * 3, [A, B, C])  # 3/3
    img2 = ([A], [False], [])  # 0/1
    img3 = ([], [], [A, B])  # 2 false alarms
    s = evaluate([img1, img2, img3])
    assert (s.num_gt, s.num_det, s.num_matched, s.num_images) == (4, 5, 3, 3)
    assert s.recall == pytest.approx(3 / 4)
    assert s.precision == pytest.approx(3 / 5)
    assert s.hmean == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    d = s.to_dict()
    assert d["num_images"] == 3 and d["hmean"] == pytest.approx(s.hmean)


def test_rotated_and_many_point_polygons():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    circle = np.stack([50 + 30 * np.cos(t), 50 + 30 * np.sin(t)], 1)
    diamond = np.array([[50, 20], [80, 50], [50, 80], [20, 50]], float)  # inscribed: IoU 2/pi
    r = evaluate_image([circle], [False], [diamond])
    assert r.num_matched == 1
    square = box(20, 20, 80, 80)  # circumscribed: IoU pi/4
    assert evaluate_image([circle], [False], [square]).num_matched == 1
    assert evaluate_image([circle], [False], [box(20, 20, 50, 80)]).num_matched == 0


def test_degenerate_polygons_do_not_crash():
    bowtie = np.array([[0, 0], [100, 20], [100, 0], [0, 20]], float)
    assert to_polygon(bowtie) is not None and to_polygon(bowtie).is_valid
    assert to_polygon(np.array([[0, 0], [1, 1]], float)) is None
    assert to_polygon(np.array([[0, 0], [5, 0], [10, 0]], float)) is None
    r = evaluate_image([A, np.array([[0, 0], [1, 1]], float)], [False, False],
                       [A, bowtie, np.array([[5, 5], [5, 5], [5, 5]], float)])
    assert r.num_matched == 1
    assert r.num_gt == 1  # an unusable ground-truth polygon is not counted
