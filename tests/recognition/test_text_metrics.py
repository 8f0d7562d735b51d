"""Text metrics against hand-computed answers."""

import pytest

from dbcli.evaluation.text_metrics import Counts, cer, edit_distance, end_to_end_image, texts_match, total, word_counts


def box(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_edit_distance_hand_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("same", "same") == 0


def test_cer_totals_over_pairs_and_folds_case():
    # "T0TAL" vs "total": 1 substitution (5 chars); "12.5" vs "12.50": 1 deletion (5 chars): 2 / 10
    assert cer([("T0TAL", "total"), ("12.5", "12.50")]) == pytest.approx(2 / 10)
    assert cer([("Total", "total")]) == 0.0
    assert cer([("Total", "total")], case_sensitive=True) == pytest.approx(1 / 5)
    assert cer([("", "")]) == 0.0
    assert cer([("x", "")]) == 1.0


def test_word_counts_bag_of_words():
    c = word_counts(["TOTAL 12.50", "cash cash"], ["Total 12.50", "cash", "change 0.00", "###"])
    # read: total 12.50 cash cash (4); expected: total 12.50 cash change 0.00 (5); matched total 12.50 cash
    assert (c.correct, c.predicted, c.expected) == (3, 4, 5)
    assert c.precision == pytest.approx(0.75)
    assert c.recall == pytest.approx(0.6)
    assert c.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_counts_edge_cases_and_total():
    assert Counts(0, 0, 0).f1 == 1.0
    assert Counts(0, 3, 0).precision == 0.0
    assert Counts(0, 0, 2).recall == 0.0
    t = total([Counts(1, 2, 2), Counts(3, 3, 4)])
    assert (t.correct, t.predicted, t.expected) == (4, 5, 6)


def test_texts_match_rules():
    assert texts_match("Hello", "HELLO")
    assert texts_match("(Hello)", "hello")  # one edge character removed from each end of the truth
    assert texts_match("hello.", "hello")
    assert not texts_match("hello", "hello.")  # only the ground truth is trimmed
    assert not texts_match("hel-lo", "hello")
    assert not texts_match("hello!!", "hello")  # one character per end


def test_end_to_end_image_hand_case():
    gts = [box(0, 0, 100, 20), box(0, 40, 100, 60), box(0, 80, 100, 100), box(200, 0, 300, 20)]
    gt_texts = ["Hello", "World", "lost", "###"]
    dets = [box(2, 1, 101, 21),    # IoU > 0.5 with "Hello", text right
            box(0, 41, 100, 61),   # matches "World" by box, text wrong
            box(500, 500, 600, 520),  # matches nothing
            box(205, 2, 295, 18)]  # inside the don't-care region: not counted
    det_texts = ["hello", "Word", "extra", "whatever"]
    c = end_to_end_image(gts, gt_texts, dets, det_texts)
    # counted ground truth 3 (### left out), counted detections 3 (the one in ### dropped), correct 1
    assert (c.correct, c.predicted, c.expected) == (1, 3, 3)
    assert c.precision == pytest.approx(1 / 3) and c.recall == pytest.approx(1 / 3)


def test_end_to_end_low_iou_is_no_match_even_with_right_text():
    c = end_to_end_image([box(0, 0, 100, 20)], ["Hello"], [box(60, 0, 160, 20)], ["Hello"])
    assert (c.correct, c.predicted, c.expected) == (0, 1, 1)
