"""`dbnet visualize` (issue 4): one PNG per input with the polygons drawn, from a model run or a
predictions file; `--maps` adds the probability and threshold heatmaps beside the image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import runner
from planted_model import planted_files, rect_image

from dbcli.cli import app
from dbcli.evaluation.predictions import load_predictions
from dbcli.outputs.drawing import BOX_COLOUR

RECTS = {"one.png": (200, 150, [(30, 40, 150, 70)]), "two.jpg": (180, 220, [(40, 60, 140, 90), (50, 150, 120, 190)])}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, (w, h, rects) in RECTS.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(rect_image(w, h, rects), cv2.COLOR_RGB2BGR))
    return folder


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def heat_value(rgb: np.ndarray) -> float:
    """Invert the turbo colour map: the [0, 1] value whose colour is nearest to ``rgb``."""
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_TURBO)[:, 0, ::-1]
    return float(np.argmin(np.abs(lut.astype(int) - np.asarray(rgb, int)).sum(axis=1)) / 255)


def box_mask(img: np.ndarray) -> np.ndarray:
    """Pixels of the outline colour."""
    return np.all(np.abs(img.astype(int) - BOX_COLOUR) <= 40, axis=2)


def test_visualize_runs_detection(model_files, images, tmp_path):
    out = tmp_path / "vis"
    result = runner.invoke(app, ["visualize", str(images), "--out", str(out), "--weights", str(model_files["onnx"])])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    for name, (w, h, rects) in RECTS.items():
        img = read_rgb(out / (Path(name).stem + ".png"))
        assert img.shape == (h, w, 3)
        mask = box_mask(img)
        assert mask.sum() > 50  # outlines were drawn
        for x0, y0, x1, y1 in rects:  # ... around the dark blocks, not through their middle
            assert not mask[(y0 + y1) // 2, (x0 + x1) // 2]
            ring = mask[max(0, y0 - 25):y1 + 25, max(0, x0 - 25):x1 + 25]
            assert ring.sum() > 0


def test_visualize_maps(model_files, images, tmp_path):
    out = tmp_path / "maps"
    result = runner.invoke(app, ["visualize", str(images / "one.png"), "--out", str(out), "--maps",
                                 "--weights", str(model_files["pt"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "one_maps.png"]
    w, h, rects = RECTS["one.png"]
    panel = read_rgb(out / "one_maps.png")
    assert h < panel.shape[0] < h + 40 and panel.shape[1] > 3 * w  # image | P | T side by side
    assert np.array_equal(panel[-h:, :w], read_rgb(out / "one.png"))  # under a caption strip
    panel = panel[-h:]
    sep = (panel.shape[1] - 3 * w) // 2
    prob = panel[:, w + sep: 2 * w + sep]
    x0, y0, x1, y1 = rects[0]
    # read the heatmap back through the colour map: the dark block is text (P ~ 1), the rest not
    assert heat_value(prob[(y0 + y1) // 2, (x0 + x1) // 2]) > 0.9
    assert heat_value(prob[h - 10, w - 10]) < 0.1
    assert heat_value(prob[y1 + 30, x1 - 20]) < 0.1

    result = runner.invoke(app, ["visualize", str(images / "one.png"), "--out", str(tmp_path / "m2"), "--maps",
                                 "--weights", str(model_files["onnx"])])
    assert result.exit_code == 1 and "torch backend" in result.stderr


def test_visualize_from_predictions_file(images, tmp_path):
    """--pred: no model is loaded; the given polygons are drawn where they are."""
    square = [[20, 20], [80, 20], [80, 60], [20, 60]]
    preds = {"model": {}, "settings": {}, "images": [
        {"file": str(images / "one.png"), "width": 200, "height": 150,
         "detections": [{"points": square, "score": 0.87}]},
        {"file": "elsewhere/two.jpg", "width": 180, "height": 220, "detections": []},  # matched by name
    ]}
    pred_file = tmp_path / "pred.json"
    pred_file.write_text(json.dumps(preds))
    (images / "three.png").write_bytes(cv2.imencode(".png", rect_image(50, 40, []))[1].tobytes())
    out = tmp_path / "vis"
    result = runner.invoke(app, ["visualize", str(images), "--out", str(out), "--pred", str(pred_file),
                                 "--weights", str(tmp_path / "no-such-weights.pt")])  # never loaded
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    assert "three.png" in result.stderr and "no entry" in result.stderr
    img = read_rgb(out / "one.png")
    mask = box_mask(img)
    # right and bottom edges, just outside the region (its own pixels stay as they are)
    assert mask[20:61, 81].mean() > 0.6 and mask[61, 30:80].mean() > 0.6
    assert not mask[21:60, 21:80].any() or not mask[40:60, 21:80].any()  # inside: at most the label
    assert not mask[100:, 120:].any()  # nothing drawn far from the polygon
    assert not box_mask(read_rgb(out / "two.png")).any()  # no detections, nothing drawn

    # JSONL predictions (dbnet detect --format jsonl) work too
    jsonl = tmp_path / "pred.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in preds["images"]))
    assert [e["file"] for e in load_predictions(jsonl)] == [e["file"] for e in preds["images"]]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["visualize", str(images), "--out", str(out), "--pred", str(bad)])
    assert result.exit_code == 1 and "error:" in result.stderr and "Traceback" not in result.output


def test_labels_never_cover_another_detection_on_a_dense_page():
    """Lines 6 px apart (a printed page): each label goes beside its own box, never over the text of
    another one (printed_page.jpg's labels hid the line above)."""
    from dbcli.outputs.drawing import draw_detections

    boxes = [(20, 10 + 26 * i, 300, 30 + 26 * i) for i in range(12)]
    dets = [(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64), 0.9) for x0, y0, x1, y1 in boxes]
    drawn = draw_detections(np.full((340, 400, 3), 255, np.uint8), dets)
    mask = box_mask(drawn)
    for x0, y0, x1, y1 in boxes:
        assert not mask[y0 + 3:y1 - 2, x0 + 3:x1 - 2].any()  # inside each outline: untouched
    # no room above or below: every label but the last goes beside its own line (left, where line
    # numbers go, or right where a two-digit number does not fit), centred on it
    for _, y0, _, y1 in boxes[:-1]:
        beside = max(mask[y0 + 4:y1 - 4, 10:18].mean(), mask[y0 + 4:y1 - 4, 303:315].mean())
        assert beside > 0.4  # a plate (black digits on it)
    assert mask[boxes[-1][3] + 2:, 20:30].mean() > 0.4 and not mask[boxes[-1][1]:boxes[-1][3], :18].any()


def _gap(a, b) -> int:
    """Chebyshev distance between two rectangles (x0, y0, x1, y1, exclusive ends); 0 when touching."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3], 0)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_labels(boxes, spots, width, height):
    """Every label inside the image, over no other box and no other label; one right beside its box
    (no leader line) is nearer its own box than any other."""
    from dbcli.outputs.drawing import _leader

    for k, spot in enumerate(spots):
        if spot is None:
            continue
        assert 0 <= spot[0] < spot[2] <= width and 0 <= spot[1] < spot[3] <= height
        for j, other in enumerate(boxes):
            assert j == k or not _overlap(spot, other), (k, spot, j, other)
        for j, other in enumerate(spots):
            assert j == k or other is None or not _overlap(spot, other)
        if _leader(spot, boxes[k]) is None:
            assert _gap(spot, boxes[k]) <= min(_gap(spot, b) for j, b in enumerate(boxes) if j != k) + 1


def test_a_label_with_no_room_above_never_goes_over_the_next_box():
    """Two lines touching, the first at the top of the image: its label used to go below it, over
    the second line, where "1" read as the second line's number."""
    from dbcli.outputs.drawing import place_labels

    boxes = [(10, 0, 200, 20), (10, 20, 200, 40), (10, 40, 200, 60)]
    for numbers in (False, True):
        spots = place_labels(boxes, [(12, 14)] * 3, 240, 80, inside=numbers, required=numbers)
        _check_labels(boxes, spots, 240, 80)
        assert spots[2] is not None and spots[2][1] >= 60  # room below the last one: there
        assert spots[0] is not None and spots[0][0] >= 200  # no room above, below or left: right of it


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("numbers", [False, True])
def test_labels_never_cover_another_box_on_generated_stacked_pages(seed, numbers):
    """Columns of stacked lines 0-4 px apart, of random widths and heights: no label over another
    box or label, all inside the image; numbers (which may sit in their own box's corner) all placed."""
    from dbcli.outputs.drawing import place_labels

    rng = np.random.default_rng(seed)
    width, height = 420, 300
    boxes, x = [], 0
    for _ in range(2):  # two columns, from the image's left edge (no room left of the first)
        y, x1 = int(rng.integers(0, 3)), x + int(rng.integers(120, 200))
        while True:
            h = int(rng.integers(16, 30))
            if y + h > height:
                break
            boxes.append((x + int(rng.integers(0, 20)), y, x1 - int(rng.integers(0, 40)), y + h))
            y += h + int(rng.integers(0, 5))
        x = x1 + int(rng.integers(2, 20))
    sizes = [(int(rng.integers(8, 34)), int(rng.integers(10, 16))) for _ in boxes]
    spots = place_labels(boxes, sizes, width, height, inside=numbers, required=numbers, far=8 if numbers else 0)
    _check_labels(boxes, spots, width, height)
    if numbers:
        assert all(s is not None for s in spots)
    else:
        assert sum(s is not None for s in spots) >= len(boxes) // 4  # room right of the columns


def test_a_number_boxed_in_on_every_side_goes_further_out_with_a_leader_line():
    from dbcli.outputs.drawing import _leader, place_labels

    cell = 14  # a 3 x 3 grid of touching 14 px cells: no spot beside the middle one, none inside it
    boxes = [(40 + cell * c, 40 + cell * r, 40 + cell * (c + 1), 40 + cell * (r + 1))
             for r in range(3) for c in range(3)]
    boxes = [boxes[4]] + boxes[:4] + boxes[5:]
    spots = place_labels(boxes, [(20, 12)] + [(0, 0)] * 8, 200, 200, inside=True, required=True)
    spots[1:] = [None] * 8
    _check_labels(boxes, spots, 200, 200)
    assert spots[0] is not None and _leader(spots[0], boxes[0]) is not None


def test_outlines_leave_the_region_whole_and_labels_stay_legible():
    """The outline is drawn just outside each region (a glyph at its edge is not covered), and a
    label beside a small region keeps a legible size (digits >= 8 px tall on any image, larger on a
    large one)."""
    from dbcli.outputs.drawing import MIN_LABEL_SCALE, draw_detections

    image = np.full((120, 240, 3), 255, np.uint8)
    region = np.array([[40, 50], [200, 50], [200, 62], [40, 62]], np.float64)  # a 12 px line
    drawn = draw_detections(image, [(region, 0.9)])
    assert not box_mask(drawn)[50:63, 40:201].any()  # the region's own pixels: untouched
    assert box_mask(drawn)[49, 60:180].mean() > 0.5 or box_mask(drawn)[63, 60:180].mean() > 0.5
    (_, th), _ = cv2.getTextSize("1", cv2.FONT_HERSHEY_SIMPLEX, MIN_LABEL_SCALE, 1)
    assert th >= 8
    big = draw_detections(np.full((2400, 2400, 3), 255, np.uint8), [(region * 10, 0.9)])
    rows = np.flatnonzero(box_mask(big)[:490, 405:415].any(axis=1))  # the plate above the region
    assert len(rows) >= 20  # (min(H, W) / LABEL_VIEW_WIDTH: legible when the whole image is viewed)


def test_a_tilted_region_is_labelled_beside_its_corner():
    """A region at 45 degrees: its bounding box's corners lie far from it; the label sits by the
    region's top corner, touching it, not 50 px away at the bounding box's corner."""
    from dbcli.outputs.drawing import draw_detections

    c, r = np.array([150.0, 150.0]), 70.0
    u, v = np.array([1.0, -1.0]) / np.sqrt(2), np.array([1.0, 1.0]) / np.sqrt(2)
    quad = np.array([c - r * u - 12 * v, c + r * u - 12 * v, c + r * u + 12 * v, c - r * u + 12 * v])
    drawn = box_mask(draw_detections(np.full((300, 300, 3), 255, np.uint8), [(quad, 0.9)]))
    top = quad[np.argmin(quad[:, 1])]
    plate = np.argwhere(drawn & ~_outline_only(quad, drawn.shape))
    assert len(plate) > 20
    nearest = np.hypot(plate[:, 1] - top[0], plate[:, 0] - top[1]).min()
    assert nearest < 8, nearest


def _outline_only(quad, shape) -> np.ndarray:
    """The pixels the outline of ``quad`` (grown 3 px, drawn 3 px wide) may cover."""
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [np.round(quad).astype(np.int32).reshape(-1, 1, 2)], True, 1, 7)
    return mask.astype(bool)


def test_no_label_is_left_out_on_a_crowded_page(monkeypatch):
    """43 touching lines filling a page's width: every label is placed (beside, further out with a
    leader line, or at worst where it covers least), none dropped silently, scores or numbers."""
    import dbcli.outputs.drawing as drawing

    boxes = [(4, 4 + 18 * i, 236, 20 + 18 * i) for i in range(43)]
    dets = [(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64), 0.5 + i / 100)
            for i, (x0, y0, x1, y1) in enumerate(boxes)]
    placed: list = []
    real = drawing.place_labels
    monkeypatch.setattr(drawing, "place_labels", lambda *a, **k: placed.append(real(*a, **k)) or placed[-1])
    for numbers in (False, True):
        drawing.draw_detections(np.full((800, 240, 3), 255, np.uint8), dets, numbers=numbers)
        assert len(placed[-1]) == 43 and all(spot is not None for spot in placed[-1])
