"""Text crops (``dbcli.postprocess.crops``, ``dbnet detect --crops``, ``Detector(...)(..., crops=True)``):
generated images with rotated rectangles of known size whose halves have known colours, so that a
crop's size, straightness and orientation can be checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import runner
from planted_model import planted_files, rect_image

from dbcli.cli import app
from dbcli.outputs.writers import crop_name
from dbcli.postprocess.crops import crop_corners, crop_region
from dbcli.postprocess.reading_order import reading_order

RED, BLUE, GREY = (150, 0, 0), (0, 0, 150), (225, 225, 225)


def corners(cx: float, cy: float, w: float, h: float, degrees: float) -> np.ndarray:
    """The 4 corners (top-left, top-right, bottom-right, bottom-left before turning) of a ``w`` x ``h``
    rectangle centred at (cx, cy), turned ``degrees`` clockwise on screen."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return local @ rot + [cx, cy]


def two_colour_rect(image: np.ndarray, quad: np.ndarray, first=RED, second=BLUE) -> None:
    """Fill ``quad`` (corners as ``corners`` gives them) with ``first`` in its first half along its
    length (from the top-left corner's side) and ``second`` in the other."""
    tl, tr, br, bl = quad
    mid_top, mid_bottom = (tl + tr) / 2, (bl + br) / 2
    cv2.fillPoly(image, [np.round(np.array([tl, mid_top, mid_bottom, bl])).astype(np.int32)], first, cv2.LINE_AA)
    cv2.fillPoly(image, [np.round(np.array([mid_top, tr, br, mid_bottom])).astype(np.int32)], second, cv2.LINE_AA)


def halves(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean colour of the middle of the left and of the right half of a crop."""
    h, w = crop.shape[:2]
    left = crop[h // 4: 3 * h // 4, w // 8: 3 * w // 8].reshape(-1, 3).mean(0)
    right = crop[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].reshape(-1, 3).mean(0)
    return left, right


def close(colour: np.ndarray, expected, tol: float = 20.0) -> bool:
    return bool(np.abs(colour - np.asarray(expected)).max() <= tol)


@pytest.mark.parametrize("degrees", [0.0, 12.0, -25.0, 40.0])
def test_a_tilted_box_comes_out_horizontal_with_its_size_and_content(degrees):
    image = np.full((400, 500, 3), GREY, np.uint8)
    quad = corners(250, 200, 180, 40, degrees)
    two_colour_rect(image, quad)
    crop = crop_region(image, quad)
    assert abs(crop.shape[1] - 180) <= 1 and abs(crop.shape[0] - 40) <= 1
    left, right = halves(crop)
    assert close(left, RED) and close(right, BLUE)  # read from the start of the text


def test_the_corner_order_given_does_not_matter():
    image = np.full((300, 400, 3), GREY, np.uint8)
    quad = corners(200, 150, 160, 40, 10)
    two_colour_rect(image, quad)
    for shift in range(4):
        crop = crop_region(image, np.roll(quad, shift, axis=0)[::-1 if shift % 2 else 1])
        left, right = halves(crop)
        assert crop.shape[:2] == crop_region(image, quad).shape[:2]
        assert close(left, RED) and close(right, BLUE)


def test_vertical_text_is_turned_to_read_left_to_right():
    """A column of text reading top to bottom (its start on top) comes out wide, its start on the left."""
    image = np.full((400, 300, 3), GREY, np.uint8)
    image[60:260, 120:160] = RED  # the first half, on top
    image[260:340, 120:160] = BLUE
    image[180:260, 120:160] = RED
    quad = np.array([[120, 60], [160, 60], [160, 340], [120, 340]], np.float64)
    crop = crop_region(image, quad)
    assert crop.shape[:2] == (40, 280)
    assert close(crop[10:30, 20:100].reshape(-1, 3).mean(0), RED)
    assert close(crop[10:30, 220:270].reshape(-1, 3).mean(0), BLUE)
    upright = crop_region(image, quad, rotate_vertical=False)
    assert upright.shape[:2] == (280, 40)


def test_a_polygon_is_cut_along_its_minimum_area_rectangle():
    image = np.full((300, 400, 3), GREY, np.uint8)
    quad = corners(200, 150, 200, 50, 15)
    two_colour_rect(image, quad)
    # A 12-point polygon along the same rectangle's outline (curved-text output).
    t = np.linspace(0, 1, 6, endpoint=False)[:, None]
    tl, tr, br, bl = quad
    outline = np.concatenate([tl + t * (tr - tl), br + t * (bl - br)])
    assert len(outline) == 12
    np.testing.assert_allclose(sorted(map(tuple, crop_corners(outline).round(3))), sorted(map(tuple, quad.round(3))),
                               atol=0.05)
    crop = crop_region(image, outline)
    assert abs(crop.shape[1] - 200) <= 1 and abs(crop.shape[0] - 50) <= 1
    left, right = halves(crop)
    assert close(left, RED) and close(right, BLUE)


def test_crop_names_keep_reading_order_in_a_listing():
    names = [crop_name("page", k) for k in (1, 2, 10, 100, 1000)]
    assert names == ["page_001.png", "page_002.png", "page_010.png", "page_100.png", "page_1000.png"]
    assert sorted(names[:4]) == names[:4]


# --- through the engine: dbnet detect --crops and the Python API --------------------------------
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


def tilted_page(path: Path) -> list[np.ndarray]:
    """A light image with three dark two-colour rectangles (one tilted 10 degrees) the planted
    model detects; saved to ``path``; returns their corners."""
    image = rect_image(420, 300, [])
    quads = [corners(130, 60, 180, 36, 0), corners(250, 150, 200, 40, 10), corners(140, 240, 160, 36, 0)]
    for q in quads:
        two_colour_rect(image, q)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return quads


def test_detect_crops_writes_one_straight_png_per_detection_named_in_the_json(model_files, tmp_path):
    quads = tilted_page(tmp_path / "sign.png")
    out, crops = tmp_path / "out.json", tmp_path / "crops"
    result = runner.invoke(app, ["detect", str(tmp_path / "sign.png"), "--weights", str(model_files["pt"]),
                                      "--device", "cpu", "--out", str(out), "--crops", str(crops)])
    assert result.exit_code == 0, result.output
    assert f"3 crops written to {crops}" in result.stderr  # (once said "3 crops in crops in 0.1 s")
    dets = json.loads(out.read_text())["images"][0]["detections"]
    assert [Path(d["crop"]).name for d in dets] == ["sign_001.png", "sign_002.png", "sign_003.png"]
    assert sorted(p.name for p in crops.iterdir()) == ["sign_001.png", "sign_002.png", "sign_003.png"]
    # in reading order: top, tilted middle, bottom
    centres = [np.mean(d["points"], axis=0) for d in dets]
    assert [int(np.argmin([np.linalg.norm(c - q.mean(0)) for q in quads])) for c in centres] == [0, 1, 2]
    for det, quad in zip(dets, quads):
        crop = cv2.cvtColor(cv2.imread(det["crop"]), cv2.COLOR_BGR2RGB)
        w, h = np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[3] - quad[0])
        p = np.asarray(det["points"])  # the detected (unclipped) box: larger than the rectangle
        box_w, box_h = np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[3] - p[0])
        assert abs(crop.shape[1] - box_w) <= 1.5 and abs(crop.shape[0] - box_h) <= 1.5
        assert crop.shape[1] >= w and crop.shape[0] >= h
        assert crop.shape[1] > 2 * crop.shape[0]  # horizontal: the tilt was taken out
        left, right = halves(crop)  # (the box holds some grey background around the rectangle)
        assert left[0] > left[2] + 80 and right[2] > right[0] + 80  # red on the left, blue on the right


def test_detect_without_crops_writes_no_crop_entries(model_files, tmp_path):
    tilted_page(tmp_path / "sign.png")
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["detect", str(tmp_path / "sign.png"), "--weights", str(model_files["pt"]),
                                      "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert all("crop" not in d for d in json.loads(out.read_text())["images"][0]["detections"])


def test_crops_of_same_named_images_in_two_folders_do_not_collide(model_files, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        tilted_page(tmp_path / "in" / folder / "sign.png")
    crops = tmp_path / "crops"
    result = runner.invoke(app, ["detect", str(tmp_path / "in"), "--weights", str(model_files["pt"]),
                                      "--device", "cpu", "--out", str(tmp_path / "o.json"), "--crops", str(crops)])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(crops)) for p in crops.rglob("*.png")) == [
        f"{d}/sign_00{k}.png" for d in "ab" for k in (1, 2, 3)]


def test_crops_into_a_file_is_a_one_line_error(model_files, tmp_path):
    tilted_page(tmp_path / "sign.png")
    (tmp_path / "taken").write_text("x")
    result = runner.invoke(app, ["detect", str(tmp_path / "sign.png"), "--weights", str(model_files["pt"]),
                                      "--device", "cpu", "--crops", str(tmp_path / "taken")])
    assert result.exit_code == 1
    assert "taken: exists and is not a directory" in result.stderr and "Traceback" not in result.output


def test_the_python_api_gives_the_same_crops_as_arrays(model_files, tmp_path):
    from dbcli import Detector

    tilted_page(tmp_path / "sign.png")
    crops = tmp_path / "crops"
    runner.invoke(app, ["detect", str(tmp_path / "sign.png"), "--weights", str(model_files["pt"]),
                             "--device", "cpu", "--out", str(tmp_path / "o.json"), "--crops", str(crops)])
    result = Detector(model_files["pt"], device="cpu")(tmp_path / "sign.png", crops=True)
    assert result.crops is not None and len(result.crops) == len(result.detections) == 3
    for k, crop in enumerate(result.crops, 1):
        written = cv2.cvtColor(cv2.imread(str(crops / crop_name("sign", k))), cv2.COLOR_BGR2RGB)
        assert crop.dtype == np.uint8 and np.array_equal(crop, written)
    assert Detector(model_files["pt"], device="cpu")(tmp_path / "sign.png").crops is None


def test_sort_none_keeps_the_post_processing_order(model_files, tmp_path):
    from dbcli import Detector

    tilted_page(tmp_path / "sign.png")
    raw = Detector(model_files["pt"], device="cpu", sort="none")(tmp_path / "sign.png")
    lines = Detector(model_files["pt"], device="cpu")(tmp_path / "sign.png")
    order = reading_order([d.points for d in raw.detections], "lines")
    assert [raw.detections[i].points.tolist() for i in order] == [d.points.tolist() for d in lines.detections]
