"""Reading order (``dbcli.postprocess.reading_order``): generated pages whose right order is known by
construction: lines of words in several columns, shuffled, straight and tilted a few degrees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dbcli.postprocess.reading_order import SORT_MODES, page_skew, reading_order


def box(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)


def page(columns: int = 2, lines: int = 5, words: int = 3, word_w: float = 70.0, height: float = 18.0,
         pitch: float = 30.0, gap: float = 8.0, gutter: float = 40.0) -> tuple[list[np.ndarray], list[tuple]]:
    """Word boxes of a page of ``columns`` columns of ``lines`` lines of ``words`` words (word gap
    ``gap``, column gutter ``gutter``, pixels) and each box's (column, line, word)."""
    boxes, where = [], []
    column_w = words * word_w + (words - 1) * gap
    for c in range(columns):
        for line in range(lines):
            for k in range(words):
                boxes.append(box(40 + c * (column_w + gutter) + k * (word_w + gap), 60 + line * pitch, word_w, height))
                where.append((c, line, k))
    return boxes, where


def tilt(polygons: list[np.ndarray], degrees: float, about=(300.0, 200.0)) -> list[np.ndarray]:
    """The polygons turned by ``degrees`` (positive: clockwise on screen, lines descending to the right)."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    centre = np.asarray(about)
    return [(p - centre) @ rot + centre for p in polygons]


def shuffled(polygons: list, seed: int = 0) -> tuple[list, list[int]]:
    perm = list(np.random.default_rng(seed).permutation(len(polygons)))
    return [polygons[i] for i in perm], perm


@pytest.mark.parametrize("degrees", [0.0, 3.0, -4.0])
def test_lines_read_across_columns_top_to_bottom_left_to_right(degrees):
    boxes, where = page(columns=3, lines=6, words=3)
    mixed, perm = shuffled(tilt(boxes, degrees), seed=int(abs(degrees) * 10) + 1)
    order = reading_order(mixed, "lines")
    got = [where[perm[i]] for i in order]
    expected = sorted(where, key=lambda t: (t[1], t[0], t[2]))  # line, then column, then word
    assert got == expected


@pytest.mark.parametrize("degrees", [0.0, 3.0, -4.0])
def test_columns_read_each_column_before_the_next(degrees):
    boxes, where = page(columns=2, lines=6, words=3)
    title = box(40, 10, 300, 24)  # a heading across both columns
    mixed, perm = shuffled(tilt(boxes + [title], degrees), seed=7)
    where = where + [(-1, -1, -1)]
    order = reading_order(mixed, "columns")
    got = [where[perm[i]] for i in order]
    assert got == [(-1, -1, -1)] + sorted(where[:-1])  # the heading, then column, line, word


def test_tilted_line_of_words_stays_one_line_when_the_page_is_level():
    """A single sign tilted 8 degrees among level lines: its words are one line, read left to right."""
    level = [box(40, 40, 80, 16), box(140, 40, 80, 16), box(40, 300, 80, 16)]
    sign = tilt([box(300 + 90 * k, 150, 80, 20) for k in range(4)], 8.0, about=(300, 160))
    mixed, perm = shuffled(level + sign, seed=3)
    order = [perm[i] for i in reading_order(mixed, "lines")]
    assert order[:2] == [0, 1] and order[-1] == 2
    assert order[2:6] == [3, 4, 5, 6]


def test_page_skew_is_the_median_direction_of_line_like_regions():
    boxes = tilt(page(columns=1, lines=4, words=2)[0], 5.0)
    from dbcli.postprocess.reading_order import _direction

    assert page_skew([_direction(p) for p in boxes]) == pytest.approx(5.0, abs=0.5)
    square = [box(0, 0, 20, 20)]  # no direction of its own
    assert page_skew([_direction(p) for p in square]) == 0.0


def test_none_keeps_the_order_and_small_inputs_pass_through():
    boxes, _ = page(columns=1, lines=3, words=2)
    mixed, _ = shuffled(boxes)
    assert reading_order(mixed, "none") == list(range(len(mixed)))
    assert reading_order([], "lines") == [] and reading_order([boxes[0]], "columns") == [0]
    with pytest.raises(ValueError, match="unknown"):
        reading_order(boxes, "zigzag")
    assert set(SORT_MODES) == {"lines", "columns", "none"}


def test_polygons_with_many_points_are_ordered_like_their_boxes():
    """Curved-text polygons (many points) go by their centres and extents like boxes do."""
    def arc(x, y):
        t = np.linspace(0, 1, 8)
        top = np.stack([x + 100 * t, y + 4 * np.sin(np.pi * t)], 1)
        return np.concatenate([top, (top + [0, 18])[::-1]])

    polys = [arc(200, 100), arc(40, 100), arc(40, 140), arc(200, 142)]
    assert reading_order(polys, "lines") == [1, 0, 2, 3]


def test_output_keys_keep_subfolders_and_never_collide(tmp_path):
    from dbcli.engine.pdf import PdfPage
    from dbcli.workflows.inputs import output_keys

    root = tmp_path / "in"
    items = [root / "a" / "photo.jpg", root / "b" / "photo.jpg", root / "a" / "scan.jpg", root / "a" / "scan.png",
             PdfPage(root / "report.pdf", 3), root / "report_p3.png"]
    assert output_keys(items) == ["a/photo", "b/photo", "a/scan", "a/scan-png", "report_p3", "report_p3-png"]
    assert output_keys([tmp_path / "one.png"]) == ["one"]


def test_an_unknown_sort_is_a_one_line_error(tmp_path):
    from generated_files import runner

    from dbcli.cli import app

    result = runner.invoke(app, ["detect", str(tmp_path / "x.png"), "--sort", "zigzag"])
    assert result.exit_code == 1
    assert "unknown --sort 'zigzag' (lines, columns, none)" in result.stderr and "Traceback" not in result.output


def test_a_short_word_with_a_noisy_tilt_stays_in_its_table_row():
    """A table of level cells where each row's first cell is a short word whose box came out tilted
    4.5 degrees (as a minimum-area rectangle of "Library" does) and sits 3 px low: rows still read
    left to right. Its own direction, followed 200 px across the page, misses its row mates."""
    cells, where = [], []
    for r in range(5):
        y = 100 + 30 * r
        cells.append(tilt([box(60, y + 3, 60, 22)], 4.5, about=(90, y + 14))[0])  # a descender: 3 px lower
        where.append((r, 0))
        for c in (1, 2):
            cells.append(box(60 + 170 * c, y, 110, 22))
            where.append((r, c))
    mixed, perm = shuffled(cells, seed=5)
    assert [where[perm[i]] for i in reading_order(mixed, "lines")] == sorted(where)
