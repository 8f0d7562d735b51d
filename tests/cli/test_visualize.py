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
    assert mask[20:61, 80].mean() > 0.6 and mask[60, 30:80].mean() > 0.6  # right and bottom edges
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


def test_scores_never_cover_another_detection_on_a_dense_page():
    """Lines 6 px apart (a printed page): each score goes above or below its own box, never over the
    text of another one (printed_page.jpg's labels hid the line above)."""
    from dbcli.outputs.drawing import draw_detections

    boxes = [(20, 10 + 26 * i, 300, 30 + 26 * i) for i in range(12)]
    dets = [(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64), 0.9) for x0, y0, x1, y1 in boxes]
    drawn = draw_detections(np.full((340, 400, 3), 255, np.uint8), dets)
    mask = box_mask(drawn)
    for x0, y0, x1, y1 in boxes:
        assert not mask[y0 + 3:y1 - 2, x0 + 3:x1 - 2].any()  # inside each outline: untouched
    # no room above or below: every score but the last goes right of its own line, centred on it
    for _, y0, _, y1 in boxes[:-1]:
        assert mask[y0:y1, 302:330].mean() > 0.4  # a plate (black digits on it)
    assert mask[boxes[-1][3] + 1:, 20:40].mean() > 0.4 and not mask[boxes[-1][1]:boxes[-1][3], 305:].any()


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
