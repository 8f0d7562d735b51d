"""``--text`` in the engine (dbcli.engine.text): the shipped ``general`` detector + recogniser read
rendered words through ``dbcli.Detector(text=True)``; TIFF, EXIF-rotated JPEG and PDF pages read
upright; a damaged recogniser is one line naming it; the text labels of ``visualize --text`` and the
lines of ``dbnet ocr`` (grouping by text line) on hand-made detections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from text_pages import PAGE_LINES, text_page, text_page_array

from dbcli import Detector
from dbcli.engine.text import with_text
from dbcli.errors import DBNetError
from dbcli.outputs.text_drawing import draw_text
from dbcli.outputs.transcript import md_escape, ocr_format, text_lines
from dbcli.postprocess.boxes import Detection
from dbcli.recognition import Reading
from dbcli.recognition import model as rec_model


@pytest.fixture(scope="module")
def reader():
    return Detector("general", backend="torch", device="cpu", text=True)


def test_detections_carry_the_words_in_reading_order(reader):
    result = reader(text_page_array())
    assert [d.text for d in result.detections] == PAGE_LINES
    assert all(0.8 < d.text_score <= 1 for d in result.detections)
    entry = result.to_dict()["detections"][0]
    assert entry["text"] == PAGE_LINES[0] and 0.8 < entry["text_score"] <= 1


def test_text_is_none_when_not_asked_for():
    result = Detector("general", backend="torch", device="cpu")(text_page_array())
    assert result.detections and all(d.text is None and d.text_score is None for d in result.detections)
    assert "text" not in result.to_dict()["detections"][0]


def test_tiff_and_exif_rotated_jpegs_read_upright(reader, tmp_path):
    page = text_page()
    page.save(tmp_path / "page.tif")
    for orientation, turn in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = orientation  # the viewer turns the stored pixels back upright
        page.transpose(turn).save(tmp_path / f"o{orientation}.jpg", quality=95, exif=exif)
    for name in ("page.tif", "o6.jpg", "o8.jpg"):
        assert [d.text for d in reader(str(tmp_path / name)).detections] == PAGE_LINES, name


def test_pdf_pages_read_upright(reader, tmp_path):
    pytest.importorskip("pypdfium2")
    second_lines = ["Thank you", "Invoice 4471"]
    first, second = text_page(), text_page(second_lines)
    first.save(tmp_path / "two.pdf", save_all=True, append_images=[second], resolution=72, quality=95)
    pages = reader.pdf(tmp_path / "two.pdf", dpi=144)  # (rendered at twice the pixels drawn)
    assert [text_lines(p.detections) for p in pages] == [PAGE_LINES, second_lines]


def test_damaged_recogniser_is_one_line_naming_it(tmp_path, monkeypatch):
    for shipped in (rec_model.RECOGNIZER, rec_model.CLASSIFIER):
        (tmp_path / shipped.file).write_bytes(shipped.path.read_bytes())
    damaged = tmp_path / rec_model.RECOGNIZER.file
    damaged.write_bytes(damaged.read_bytes()[:1000])
    monkeypatch.setattr(rec_model, "weights_dir", lambda: tmp_path)
    with pytest.raises(DBNetError) as err:
        Detector("general", backend="torch", device="cpu", text=True)
    assert str(damaged) in str(err.value) and "\n" not in str(err.value)


def test_with_text_fills_every_detection_and_empty_regions_read_empty():
    dets = [Detection(np.zeros((4, 2)), 0.9), Detection(np.ones((4, 2)), 0.8)]
    crops = [np.zeros((8, 30, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)]
    out = with_text(dets, crops, lambda cs: [Reading("abc", 0.7), Reading("", 0.0)][:len(cs)])
    assert [(d.text, d.text_score, d.score) for d in out] == [("abc", 0.7, 0.9), ("", 0.0, 0.8)]


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def test_text_lines_join_the_regions_of_one_line():
    dets = [Detection(_box(10, 10, 60, 30), 1, "TOTAL"), Detection(_box(80, 11, 130, 31), 1, "12.50"),
            Detection(_box(10, 50, 90, 70), 1, "Thanks"), Detection(_box(100, 50, 120, 70), 1, ""),
            Detection(_box(10, 90, 90, 110), 1, "")]
    assert text_lines(dets) == ["TOTAL 12.50", "Thanks"]


def test_ocr_formats_and_markdown_escapes():
    assert ocr_format(None) == "txt" and ocr_format(Path("a.MD")) == "md"
    with pytest.raises(DBNetError, match="a.csv"):
        ocr_format(Path("a.csv"))
    assert md_escape("# 1*2 [x]") == r"\# 1\*2 \[x\]" and md_escape("3. item") == r"3\. item"


def test_text_labels_beside_boxes_and_margin_when_crowded():
    image = np.full((200, 300, 3), 255, np.uint8)
    roomy = draw_text(image, [(_box(20, 80, 150, 110), "hello")])
    assert roomy.shape == image.shape
    above = roomy[50:80, 20:150]  # the white label with its outline, above the box
    assert (above != 255).any()
    crowded = np.full((60, 200, 3), 255, np.uint8)
    out = draw_text(crowded, [(_box(0, 0, 200, 30), "first line"), (_box(0, 30, 200, 60), "second")])
    assert out.shape[0] == 60 and out.shape[1] > 200  # listed in a margin on the right
    assert (out[:, 200:] != 255).any()


def test_recogniser_follows_the_detector_onto_cuda(monkeypatch):
    import onnxruntime

    from dbcli.engine.text import reader_providers

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: both)
    assert reader_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert reader_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert reader_providers("cuda") == ["CPUExecutionProvider"]  # (onnxruntime without its CUDA provider)
