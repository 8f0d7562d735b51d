"""PDF input (``dbcli.engine.pdf``): PDFs made in the test (pages of dark rectangles at known places, drawn
with Pillow; encrypted, damaged and page-less files written by hand), through ``dbnet detect``,
``dbnet visualize`` and the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import encrypted_pdf, raw_pdf, runner
from PIL import Image
from planted_model import match_rects, planted_files, rect_image

from dbcli.cli import app

pytest.importorskip("pypdfium2")

PAGES = [(300, 200, [(30, 40, 150, 70), (60, 120, 260, 150)]), (240, 320, [(40, 60, 200, 95)])]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


def make_pdf(path: Path) -> Path:
    """A two-page PDF of ``PAGES`` (one image point per pixel: a page is as many points as its image
    has pixels)."""
    images = [Image.fromarray(rect_image(w, h, rects)) for w, h, rects in PAGES]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=72.0)
    return path


def detect(model_files, *args: str):
    return runner.invoke(app, ["detect", *args, "--weights", str(model_files["pt"]), "--device", "cpu"])


@pytest.mark.parametrize("dpi", [144, 72])
def test_detect_on_a_pdf_gives_one_result_per_page_in_page_pixels(model_files, tmp_path, dpi):
    pdf = make_pdf(tmp_path / "report.pdf")
    out = tmp_path / "out.json"
    result = detect(model_files, str(pdf), "--out", str(out), "--dpi", str(dpi))
    assert result.exit_code == 0, result.output
    images = json.loads(out.read_text())["images"]
    assert [e["file"] for e in images] == [f"{pdf}#page=1", f"{pdf}#page=2"]
    scale = dpi / 72
    for entry, (w, h, rects), number in zip(images, PAGES, (1, 2)):
        assert entry["page"] == number and entry["dpi"] == dpi
        assert entry["page_size_pt"] == [w, h]  # 72 dpi images: one point per pixel
        assert (entry["width"], entry["height"]) == (round(w * scale), round(h * scale))
        scaled = [tuple(round(v * scale) for v in r) for r in rects]
        assert match_rects(entry["detections"], scaled, tol=6 * scale), entry["detections"]


def test_pdf_pages_beside_images_in_a_folder_and_icdar_names_per_page(model_files, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_pdf(folder / "report.pdf")
    cv2.imwrite(str(folder / "photo.png"), rect_image(200, 150, [(30, 40, 150, 70)]))
    result = detect(model_files, str(folder), "--format", "icdar", "--out", str(tmp_path / "res"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        "res_photo.txt", "res_report_p1.txt", "res_report_p2.txt"]
    assert len((tmp_path / "res" / "res_report_p1.txt").read_text().splitlines()) == 2


@pytest.mark.parametrize("kind, message", [
    ("damaged", "not a readable PDF"),
    ("encrypted", "encrypted (it needs a password)"),
    ("empty", "has no pages"),
])
def test_unusable_pdfs_are_named_warnings_and_the_rest_goes_on(model_files, tmp_path, kind, message):
    bad = tmp_path / f"{kind}.pdf"
    bad.write_bytes({"damaged": b"%PDF-1.4\nthis is not a PDF body\n",
                     "encrypted": encrypted_pdf(),
                     "empty": raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                                       b"<< /Type /Pages /Kids [] /Count 0 >>"])}[kind])
    good = make_pdf(tmp_path / "good.pdf")
    out = tmp_path / "out.json"
    result = detect(model_files, str(bad), str(good), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"{bad}: " in result.stderr and message in result.stderr and "Traceback" not in result.output
    assert [e["page"] for e in json.loads(out.read_text())["images"]] == [1, 2]
    alone = detect(model_files, str(bad), "--out", str(tmp_path / "none.json"))
    assert alone.exit_code == 1 and message in alone.stderr and not (tmp_path / "none.json").exists()


def test_without_pypdfium2_a_pdf_names_the_extra_to_install(model_files, tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "report.pdf")
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import fails as when it is not installed
    result = detect(model_files, str(pdf), "--out", str(tmp_path / "o.json"))
    assert result.exit_code == 1
    assert f"{pdf}: reading PDF files needs pypdfium2: pip install 'dbnet-cli[pdf]'" in result.stderr


def test_resume_knows_pdf_pages_done(model_files, tmp_path):
    pdf = make_pdf(tmp_path / "report.pdf")
    out = tmp_path / "out.jsonl"
    assert detect(model_files, str(pdf), "--out", str(out)).exit_code == 0
    again = detect(model_files, str(pdf), "--out", str(out), "--resume")
    assert again.exit_code == 0, again.output
    assert "2 done before" in again.stderr and "0 images" in again.stderr
    assert len(out.read_text().splitlines()) == 2


def test_crops_of_pdf_pages_are_named_by_page(model_files, tmp_path):
    pdf = make_pdf(tmp_path / "report.pdf")
    crops = tmp_path / "crops"
    result = detect(model_files, str(pdf), "--out", str(tmp_path / "o.json"), "--crops", str(crops))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in crops.iterdir()) == ["report_p1_001.png", "report_p1_002.png", "report_p2_001.png"]


def test_visualize_draws_pdf_pages_numbered_in_reading_order(model_files, tmp_path):
    pdf = make_pdf(tmp_path / "report.pdf")
    out = tmp_path / "vis"
    result = runner.invoke(app, ["visualize", str(pdf), "--out", str(out), "--numbers",
                                      "--weights", str(model_files["pt"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report_p1.png", "report_p2.png"]
    for (w, h, _), name in zip(PAGES, ("report_p1.png", "report_p2.png")):
        assert cv2.imread(str(out / name)).shape[:2] == (2 * h, 2 * w)  # page pixels at 144 dpi
    # --pred with the JSON of dbnet detect: the same pages found by their "#page=N" names
    preds = tmp_path / "p.json"
    assert detect(model_files, str(pdf), "--out", str(preds)).exit_code == 0
    again = runner.invoke(app, ["visualize", str(pdf), "--out", str(tmp_path / "vis2"), "--numbers",
                                     "--pred", str(preds)])
    assert again.exit_code == 0, again.output
    for name in ("report_p1.png", "report_p2.png"):
        assert np.array_equal(cv2.imread(str(out / name)), cv2.imread(str(tmp_path / "vis2" / name)))


def test_numbers_label_regions_by_position_not_by_score():
    """Labels are reading-order numbers (the score only where it stands out: ``label_texts``); a
    number follows the region's position in the list, not its score."""
    from dbcli.outputs.drawing import draw_detections, label_texts

    image = np.full((200, 300, 3), 255, np.uint8)
    a = np.array([[20, 60], [120, 60], [120, 90], [20, 90]], np.float64)
    b = a + [150, 0]
    same_score = [(a, 0.9), (b, 0.9)]
    default = draw_detections(image, same_score)
    numbers = draw_detections(image, same_score, numbers=True)
    label = lambda img, p: img[30:60, int(p[0, 0]):int(p[0, 0]) + 40]  # noqa: E731 (the strip above a box)
    assert not np.array_equal(label(numbers, a), label(numbers, b))  # "1" and "2"
    assert np.array_equal(label(default, a), label(numbers, a))  # equal scores: numbers alone
    swapped = draw_detections(image, [(b, 0.9), (a, 0.9)], numbers=True)
    assert np.array_equal(label(swapped, b), label(numbers, a))  # the number follows the position
    assert label_texts([0.99, 0.98, 0.71, 1.0], numbers=False) == ["1", "2", "3:0.71", "4"]
    assert label_texts([0.99, 0.71], numbers=True) == ["1", "2"]


def test_the_python_api_reads_pdf_pages(model_files, tmp_path):
    from dbcli import Detector

    pdf = make_pdf(tmp_path / "report.pdf")
    pages = Detector(model_files["pt"], device="cpu").pdf(pdf, dpi=72, crops=True)
    assert [r.file for r in pages] == [f"{pdf}#page=1", f"{pdf}#page=2"]
    assert [r.page.number for r in pages if r.page] == [1, 2]
    assert [len(r.detections) for r in pages] == [2, 1]
    assert pages[0].crops is not None and len(pages[0].crops) == 2


def test_a_pdf_given_to_a_detector_call_points_to_its_pdf_method(model_files, tmp_path):
    from dbcli import DBNetError, Detector

    pdf = make_pdf(tmp_path / "report.pdf")
    with pytest.raises(DBNetError, match=r"report.pdf: a PDF holds pages: detector.pdf\("):
        Detector(model_files["pt"], device="cpu")(pdf)


def test_a_page_result_with_crops_survives_the_trip_between_processes():
    """Under torchrun, results travel as ``to_dict`` entries and come back with ``from_dict``: the
    page's fields and the crop files must come back too (rank 0 writes them)."""
    from dbcli.engine.pdf import PageInfo
    from dbcli.engine.records import ImageRecord
    from dbcli.postprocess.boxes import Detection

    box = np.array([[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]])
    result = ImageRecord(3, "r.pdf#page=2", 1191, 1684, [Detection(box, 0.9), Detection(box + 20, 0.8)],
                         page=PageInfo(2, 595.28, 841.89, 144.0), crop_files=["c/r_p2_001.png", "c/r_p2_002.png"])
    entry = json.loads(json.dumps(result.to_dict()))
    assert entry["page"] == 2 and entry["page_size_pt"] == [595.28, 841.89] and entry["dpi"] == 144.0
    assert [d["crop"] for d in entry["detections"]] == ["c/r_p2_001.png", "c/r_p2_002.png"]
    back = ImageRecord.from_dict(3, entry)
    assert back.to_dict() == entry and back.index == 3
    plain = ImageRecord(0, "a.png", 10, 10, [])
    assert ImageRecord.from_dict(0, plain.to_dict()).to_dict() == {"file": "a.png", "width": 10, "height": 10,
                                                                    "detections": []}


def test_pdf_pages_with_crops_on_the_onnx_backend_never_import_torch(model_files, tmp_path):
    import subprocess

    from generated_files import TORCH_BLOCKER

    pdf = make_pdf(tmp_path / "report.pdf")
    script = tmp_path / "no_torch.py"
    script.write_text(TORCH_BLOCKER)
    proc = subprocess.run([sys.executable, str(script), "detect", str(pdf), "--weights", str(model_files["onnx"]),
                           "--out", str(tmp_path / "o.json"), "--crops", str(tmp_path / "crops"), "--sort", "columns"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith("TORCH_MODULES=")
    images = json.loads((tmp_path / "o.json").read_text())["images"]
    assert [len(e["detections"]) for e in images] == [2, 1]
    assert all(Path(d["crop"]).is_file() for e in images for d in e["detections"])
