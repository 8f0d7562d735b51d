"""Dataset readers on small annotation files written by the tests themselves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dbcli.data.datasets import load_custom, load_icdar15, load_samples, parse_icdar_gt, split_holdout
from dbcli.data.formats import (
    load_ctw1500,
    load_td500,
    load_totaltext,
    parse_ctw1500_gt,
    parse_td500_gt,
    parse_totaltext_gt,
    td500_box,
)
from dbcli.errors import DBNetError

BOM = "\ufeff"


def touch_image(path: Path) -> Path:
    """An image file for the loaders to list (they do not decode it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 not decoded by the loaders")
    return path


def write(path: Path, text: str, newline: str = "\n", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (BOM if bom else "") + text.replace("\n", newline)
    path.write_bytes(data.encode("utf-8"))
    return path


# --- ICDAR 2015 -----------------------------------------------------------------------------------
ICDAR_GT = ("377,117,463,117,465,130,378,130,Genaxis Theatre\n"
            "493,115,519,115,519,131,493,131,36,000,000\n"
            "374,155,409,155,409,170,374,170,###\n"
            "\n")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_icdar_gt_bom_crlf_commas_and_dont_care(tmp_path, newline):
    gt = write(tmp_path / "gt_img_1.txt", ICDAR_GT, newline, bom=True)
    polygons, ignore = parse_icdar_gt(gt)
    assert len(polygons) == 3
    np.testing.assert_array_equal(polygons[0], [[377, 117], [463, 117], [465, 130], [378, 130]])
    # the BOM did not leak into the first coordinate; commas in "36,000,000" are transcription
    np.testing.assert_array_equal(polygons[1][0], [493, 115])
    assert ignore == [False, False, True]


def test_icdar_gt_malformed_lines_name_file_and_line(tmp_path):
    gt = write(tmp_path / "gt_img_7.txt", "1,2,3,4,5,6,7,8,ok\n1,2,3,x,5,6,7,8,bad\n")
    with pytest.raises(DBNetError, match=r"gt_img_7\.txt:2: non-numeric"):
        parse_icdar_gt(gt)
    short = write(tmp_path / "gt_img_8.txt", "\n\n1,2,3,4\n")
    with pytest.raises(DBNetError, match=r"gt_img_8\.txt:3: expected 8 coordinates"):
        parse_icdar_gt(short)


@pytest.mark.parametrize("layout", ["common", "official"])
def test_icdar15_both_layouts(tmp_path, layout):
    names = {"common": ("train_images", "train_gts", "test_images", "test_gts"),
             "official": ("ch4_training_images", "ch4_training_localization_transcription_gt",
                          "ch4_test_images", "Challenge4_Test_Task1_GT")}[layout]
    for i in (1, 2, 10):
        touch_image(tmp_path / names[0] / f"img_{i}.jpg")
        write(tmp_path / names[1] / f"gt_img_{i}.txt", f"{i},0,{i + 20},0,{i + 20},10,{i},10,w{i}\n", "\r\n", True)
    touch_image(tmp_path / names[2] / "img_5.jpg")
    write(tmp_path / names[3] / "gt_img_5.txt", ICDAR_GT, bom=True)
    train = load_icdar15(tmp_path, "train")
    assert [s.image_path.name for s in train] == ["img_1.jpg", "img_2.jpg", "img_10.jpg"]  # natural order
    assert train[2].polygons[0][0].tolist() == [10, 0] and train[0].exif
    test = load_samples("icdar15", tmp_path, "test")
    assert len(test) == 1 and test[0].ignore == [False, False, True]


def test_icdar15_missing_folders_and_gt(tmp_path):
    with pytest.raises(DBNetError, match="no ICDAR 2015 train split"):
        load_icdar15(tmp_path, "train")
    touch_image(tmp_path / "train_images" / "img_1.jpg")
    (tmp_path / "train_gts").mkdir()
    with pytest.raises(DBNetError, match=r"gt_img_1\.txt: ground truth missing"):
        load_icdar15(tmp_path, "train")
    with pytest.raises(DBNetError, match="data root does not exist"):
        load_samples("icdar15", tmp_path / "nowhere", "train")
    with pytest.raises(DBNetError, match="unknown dataset"):
        load_samples("coco", tmp_path, "train")


def test_dbnet_data_fallback(tmp_path, monkeypatch):
    root = tmp_path / "data" / "icdar15"
    touch_image(root / "test_images" / "img_3.jpg")
    write(root / "test_gts" / "gt_img_3.txt", "0,0,30,0,30,12,0,12,x\n")
    monkeypatch.setenv("DBNET_DATA", str(tmp_path / "data"))
    samples = load_samples("icdar15", None, "test")
    assert [s.image_path for s in samples] == [root / "test_images" / "img_3.jpg"]
    monkeypatch.delenv("DBNET_DATA")
    with pytest.raises(DBNetError, match=r"\$DBNET_DATA"):
        load_samples("icdar15", None, "test")


# --- MSRA-TD500 -----------------------------------------------------------------------------------
def test_td500_box_rotation_about_centre():
    x, y, w, h = 10.0, 20.0, 40.0, 10.0  # centre (30, 25)
    np.testing.assert_allclose(td500_box(x, y, w, h, 0.0), [[10, 20], [50, 20], [50, 30], [10, 30]])
    quarter = td500_box(x, y, w, h, math.pi / 2)
    # a quarter turn about the centre: the 40-wide box becomes 40 tall, still centred at (30, 25);
    # y points down, so the top-left corner goes to the top-right.
    np.testing.assert_allclose(quarter, [[35, 5], [35, 45], [25, 45], [25, 5]], atol=1e-9)
    np.testing.assert_allclose(quarter.mean(0), [30, 25])
    small = td500_box(0, 0, 20, 10, 0.3)
    edge = small[1] - small[0]
    assert math.isclose(math.atan2(edge[1], edge[0]), 0.3) and math.isclose(np.hypot(*edge), 20)


def test_td500_parse_difficult_and_errors(tmp_path):
    gt = write(tmp_path / "IMG_0001.gt", "0 0 100 50 80 20 0.0\n1 1 10 10 30 12 -0.5\n", "\r\n", bom=True)
    polygons, ignore = parse_td500_gt(gt)
    assert ignore == [False, True]
    np.testing.assert_allclose(polygons[0], [[100, 50], [180, 50], [180, 70], [100, 70]])
    np.testing.assert_allclose(polygons[1], td500_box(10, 10, 30, 12, -0.5))
    bad = write(tmp_path / "IMG_0002.gt", "0 0 1 2 3 4 0.1\n1 0 1 2 3\n")
    with pytest.raises(DBNetError, match=r"IMG_0002\.gt:2: expected 7 fields"):
        parse_td500_gt(bad)
    bad = write(tmp_path / "IMG_0003.gt", "0 0 1 2 3 4 zero\n")
    with pytest.raises(DBNetError, match=r"IMG_0003\.gt:1: non-numeric"):
        parse_td500_gt(bad)
    bad = write(tmp_path / "IMG_0004.gt", "0 2 1 2 3 4 0\n")
    with pytest.raises(DBNetError, match=r"IMG_0004\.gt:1: difficult flag"):
        parse_td500_gt(bad)


def test_td500_loader_reads_stored_pixels(tmp_path):
    for name in ("IMG_0101", "IMG_0005"):
        touch_image(tmp_path / "train" / f"{name}.JPG")
        write(tmp_path / "train" / f"{name}.gt", "0 0 10 10 50 20 0.1\n")
    samples = load_td500(tmp_path, "train")
    assert [s.image_path.name for s in samples] == ["IMG_0005.JPG", "IMG_0101.JPG"]
    assert all(s.exif is False for s in samples)  # boxes are in stored-pixel coordinates
    with pytest.raises(DBNetError, match="no MSRA-TD500 test images folder"):
        load_td500(tmp_path, "test")
    touch_image(tmp_path / "train" / "IMG_0200.JPG")
    with pytest.raises(DBNetError, match=r"IMG_0200\.JPG: no ground-truth file"):
        load_samples("td500", tmp_path, "train")


# --- Total-Text -----------------------------------------------------------------------------------
TOTALTEXT_GT = (
    "x: [[115 503 494 115]], y: [[322 346 426 404]], ornt: [u'c'], transcriptions: [u'nauGHTY']\n"
    # one record wrapped over three physical lines, with many points
    "x: [[ 10  20  30  40  50  50  40  30\n"
    "   20  10]], y: [[100  95  93  95 100 120 115 113 115 120]], ornt: [u'c'],\n"
    "  transcriptions: [u\"it's, here\"]\n"
    "x: [[1 9 9 1]], y: [[1 1 9 9]], ornt: [u'#'], transcriptions: [u'#']\n")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_totaltext_multiline_records(tmp_path, newline):
    gt = write(tmp_path / "gt_img11.txt", TOTALTEXT_GT, newline, bom=True)
    polygons, ignore = parse_totaltext_gt(gt)
    assert [len(p) for p in polygons] == [4, 10, 4]
    np.testing.assert_array_equal(polygons[0], [[115, 322], [503, 346], [494, 426], [115, 404]])
    np.testing.assert_array_equal(polygons[1][4:6], [[50, 100], [50, 120]])
    assert ignore == [False, False, True]


def test_totaltext_malformed_records(tmp_path):
    bad = write(tmp_path / "gt_img1.txt", "x: [[1 2 3 4]], y: [[1 2 3 4]], ornt: [u'c'], transcriptions: [u'a']\n"
                                          "x: [[1 2 3]], y: [[1 2 3 4]], ornt: [u'c'], transcriptions: [u'b']\n")
    with pytest.raises(DBNetError, match=r"gt_img1\.txt:2: 3 x coordinates but 4 y"):
        parse_totaltext_gt(bad)
    bad = write(tmp_path / "gt_img2.txt", "x: [[1 2 a 4]], y: [[1 2 3 4]], transcriptions: [u'a']\n")
    with pytest.raises(DBNetError, match=r"gt_img2\.txt:1: non-numeric x"):
        parse_totaltext_gt(bad)
    bad = write(tmp_path / "gt_img3.txt", "\nx: [[1 2 3 4]] y: [[1 2 3 4]]\n")
    with pytest.raises(DBNetError, match=r"gt_img3\.txt:2: not a Total-Text record"):
        parse_totaltext_gt(bad)


def test_totaltext_layouts(tmp_path):
    touch_image(tmp_path / "Images" / "Train" / "img11.jpg")
    touch_image(tmp_path / "Images" / "Train" / "img2.JPG")
    write(tmp_path / "Groundtruth" / "Polygon" / "Train" / "gt_img11.txt", TOTALTEXT_GT)
    write(tmp_path / "Groundtruth" / "Polygon" / "Train" / "poly_gt_img2.txt", TOTALTEXT_GT.split("\n")[0])
    samples = load_totaltext(tmp_path, "train")
    assert [(s.image_path.name, len(s.polygons)) for s in samples] == [("img2.JPG", 1), ("img11.jpg", 3)]
    # the DBNet authors' copies: train_images/ + train_gts/<image name>.txt with x1,y1,...,text lines
    other = tmp_path / "db"
    touch_image(other / "test_images" / "img1.jpg")
    write(other / "test_gts" / "img1.jpg.txt", "1,1,50,1,60,20,30,30,1,20,WORD\n5,5,9,5,9,9,###\n")
    [sample] = load_totaltext(other, "test")
    assert [len(p) for p in sample.polygons] == [5, 3] and sample.ignore == [False, True]
    with pytest.raises(DBNetError, match="no Total-Text test images folder"):
        load_totaltext(tmp_path, "test")


# --- CTW1500 --------------------------------------------------------------------------------------
def _curve(x0: float, y0: float) -> list[float]:
    """14 points: 7 along a curved top edge, 7 back along the bottom."""
    top = [(x0 + 10 * i, y0 + 0.5 * (i - 3) ** 2) for i in range(7)]
    bottom = [(x + 0, y + 12) for x, y in reversed(top)]
    return [v for p in top + bottom for v in p]


def test_ctw1500_curved_txt_release(tmp_path):
    a, b = _curve(100, 50), _curve(10, 200)
    text = (",".join(f"{v:g}" for v in a) + ",####Hello, world\n"
            + ",".join(f"{v:g}" for v in b) + ",#######\n")
    gt = write(tmp_path / "1001.txt", text, "\r\n", bom=True)
    polygons, ignore = parse_ctw1500_gt(gt)
    assert [p.shape for p in polygons] == [(14, 2), (14, 2)]
    np.testing.assert_allclose(polygons[0].ravel(), a)
    np.testing.assert_allclose(polygons[1].ravel(), b)
    assert ignore == [False, True]  # "####" is a separator; "###" after it is don't care


def test_ctw1500_offset_and_xml_formats(tmp_path):
    pts = np.array(_curve(40, 30)).reshape(-1, 2)
    xmin, ymin = pts.min(0)
    xmax, ymax = pts.max(0)
    offsets = (pts - (xmin, ymin)).ravel()
    gt = write(tmp_path / "0001.txt", ",".join(f"{v:g}" for v in [xmin, ymin, xmax, ymax, *offsets]) + "\n")
    [poly], [ign] = parse_ctw1500_gt(gt)
    np.testing.assert_allclose(poly, pts)
    assert not ign
    xml = write(tmp_path / "0002.xml",
                '<Annotations><image file="0002.jpg">'
                '<box height="20" left="5" top="6" width="30"><label>abc</label>'
                f'<segs>{",".join(f"{v:g}" for v in pts.ravel())}</segs></box>'
                '<box height="10" left="1" top="2" width="8"><label>###</label></box>'
                '</image></Annotations>')
    polygons, ignore = parse_ctw1500_gt(xml)
    np.testing.assert_allclose(polygons[0], pts)
    np.testing.assert_allclose(polygons[1], [[1, 2], [9, 2], [9, 12], [1, 12]])
    assert ignore == [False, True]
    broken = write(tmp_path / "0003.xml", "<Annotations>\n<image>\n</Annotations>")
    with pytest.raises(DBNetError, match=r"0003\.xml:3: invalid XML"):
        parse_ctw1500_gt(broken)


def test_ctw1500_malformed_and_layout(tmp_path):
    bad = write(tmp_path / "1002.txt", ",".join(map(str, _curve(0, 0))) + ",####ok\n1,2,x,4,####bad\n")
    with pytest.raises(DBNetError, match=r"1002\.txt:2: non-numeric"):
        parse_ctw1500_gt(bad)
    bad = write(tmp_path / "1003.txt", "1,2,3,####odd\n")
    with pytest.raises(DBNetError, match=r"1003\.txt:1: odd number"):
        parse_ctw1500_gt(bad)
    touch_image(tmp_path / "root" / "test_images" / "1001.jpg")
    touch_image(tmp_path / "root" / "test_images" / "1010.jpg")
    write(tmp_path / "root" / "test_gts" / "1001.txt", ",".join(map(str, _curve(0, 0))) + ",####A\n")
    write(tmp_path / "root" / "test_gts" / "1010.txt", "")
    samples = load_samples("ctw1500", tmp_path / "root", "test")
    assert [(s.image_path.name, len(s.polygons)) for s in samples] == [("1001.jpg", 1), ("1010.jpg", 0)]
    with pytest.raises(DBNetError, match="no CTW1500 train images folder"):
        load_ctw1500(tmp_path / "root", "train")


# --- custom JSON Lines ----------------------------------------------------------------------------
def test_custom_jsonl(tmp_path):
    lines = [json.dumps({"image": "a.png", "polygons": [{"points": [[0, 0], [10, 0], [10, 5]]},
                                                        {"points": [[1, 1], [4, 1], [4, 4], [1, 4]], "ignore": True},
                                                        [[2, 2], [8, 2], [8, 6]]]}),
             "",
             json.dumps({"image": str(tmp_path / "abs.jpg"), "polygons": [], "exif": False})]
    write(tmp_path / "train.jsonl", "\n".join(lines) + "\n", "\r\n", bom=True)
    samples = load_custom(tmp_path, "train")
    assert samples[0].image_path == tmp_path / "a.png"
    assert samples[0].ignore == [False, True, False] and [len(p) for p in samples[0].polygons] == [3, 4, 3]
    assert samples[1].image_path == tmp_path / "abs.jpg" and samples[1].exif is False
    # the data root may also be the .jsonl file itself
    assert len(load_samples("custom", tmp_path / "train.jsonl", "test")) == 2
    with pytest.raises(DBNetError, match=r"test\.jsonl: no such annotation file"):
        load_custom(tmp_path, "test")


@pytest.mark.parametrize("line, what", [
    ('{"image": "a.png", "polygons": [{"points": [[0, 0], [1, 1]]}]}', "at least 3"),
    ('{"polygons": []}', "KeyError"),
    ('{"image": "a.png", "polygons": [{"points": [[0, 0], [1, "x"], [2, 2]]}]}', "ValueError"),
    ('{"image": "a.png", "polygons": [', "JSONDecodeError"),
])
def test_custom_jsonl_bad_lines(tmp_path, line, what):
    good = json.dumps({"image": "ok.png", "polygons": []})
    write(tmp_path / "train.jsonl", f"{good}\n{good}\n{line}\n")
    with pytest.raises(DBNetError, match=rf"train\.jsonl:3: .*{what}"):
        load_custom(tmp_path, "train")


def test_split_holdout_is_deterministic_and_disjoint(tmp_path):
    samples = [type("S", (), {"i": i})() for i in range(50)]
    train, val = split_holdout(samples, 0.1, seed=0)
    train2, val2 = split_holdout(samples, 0.1, seed=0)
    assert [s.i for s in val] == [s.i for s in val2] and len(val) == 5
    assert {s.i for s in train} | {s.i for s in val} == set(range(50)) and not {s.i for s in train} & {s.i for s in val}
    assert [s.i for s in split_holdout(samples, 0.1, seed=1)[1]] != [s.i for s in val]
