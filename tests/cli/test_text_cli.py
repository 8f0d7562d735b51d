"""``--text`` through the CLI (the shipped ``general`` detector + recogniser on rendered pages):
``dbnet detect --text`` JSON and ICDAR lines hold the words (commas kept), ``dbnet ocr`` prints the
lines in reading order with a header per image and writes .md / .json, the same strings as the API,
and ``dbnet visualize --text`` draws them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from generated_files import invoke
from PIL import Image
from text_pages import PAGE_LINES, text_page

from dbcli import Detector

MODEL = ["--weights", "general", "--backend", "torch", "--device", "cpu"]
COMMA_LINES = ["TOTAL 12,50", "Thank you"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text-pages")
    text_page().save(folder / "receipt.png")
    text_page(COMMA_LINES).save(folder / "comma.png")
    return folder


def test_detect_text_json_has_the_words_and_equals_the_api(pages, tmp_path):
    result = invoke("detect", pages / "receipt.png", "--text", "--out", tmp_path / "out.json", *MODEL)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["settings"]["text"] is True
    dets = doc["images"][0]["detections"]
    assert [d["text"] for d in dets] == PAGE_LINES and all(0.8 < d["text_score"] <= 1 for d in dets)
    api = Detector("general", backend="torch", device="cpu", text=True)(str(pages / "receipt.png"))
    assert [d.text for d in api.detections] == [d["text"] for d in dets]


def test_detect_text_icdar_lines_end_with_the_text_commas_kept(pages, tmp_path):
    result = invoke("detect", pages / "comma.png", "--text", "--format", "icdar", "--out", tmp_path / "ic", *MODEL)
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "ic" / "res_comma.txt").read_text().splitlines()
    texts = [line.split(",", 9)[9] for line in lines]  # 8 coordinates, the score, then the text
    assert "Thank you" in texts and ("TOTAL 12,50" in texts or "12,50" in texts)  # (a line may come in words)
    assert all(0 < float(line.split(",")[8]) <= 1 for line in lines)


def test_ocr_prints_lines_in_order_with_a_header_per_image(pages):
    result = invoke("ocr", pages / "receipt.png", pages / "comma.png", *MODEL)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"=== {pages / 'receipt.png'} ===", *PAGE_LINES,
                                          f"=== {pages / 'comma.png'} ===", *COMMA_LINES]
    assert "2 images, 5 lines of text" in result.stderr


def test_ocr_out_md_and_json(pages, tmp_path):
    assert invoke("ocr", pages / "receipt.png", "--out", tmp_path / "t.md", *MODEL).exit_code == 0
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("<!-- dbnet ocr -->") and "TOTAL 12.50\n" in md and "## " in md
    assert invoke("ocr", pages / "receipt.png", "--out", tmp_path / "t.json", *MODEL).exit_code == 0
    entry = json.loads((tmp_path / "t.json").read_text())["images"][0]
    assert entry["lines"] == PAGE_LINES and [d["text"] for d in entry["detections"]] == PAGE_LINES
    assert invoke("ocr", pages / "receipt.png", "--out", tmp_path / "t.md", *MODEL).exit_code == 0  # its own file


def test_ocr_never_replaces_an_input_or_someone_elses_file(pages, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = invoke("ocr", pages / "receipt.png", "--out", notes, *MODEL)
    assert result.exit_code != 0 and "--overwrite" in result.stderr and notes.read_text() == "my notes\n"
    result = invoke("ocr", pages / "receipt.png", "--out", tmp_path / "o.csv", *MODEL)
    assert result.exit_code != 0 and "o.csv" in result.stderr and not (tmp_path / "o.csv").exists()
    result = invoke("ocr", pages / "receipt.png", "--out", pages / "receipt.png", *MODEL)
    assert result.exit_code != 0 and Image.open(pages / "receipt.png").size == text_page().size


def test_visualize_text_writes_a_drawing_with_labels(pages, tmp_path):
    result = invoke("visualize", pages / "receipt.png", "--text", "--out", tmp_path / "vis", *MODEL)
    assert result.exit_code == 0, result.output
    drawn = Image.open(tmp_path / "vis" / "receipt.png")
    plain = Image.open(pages / "receipt.png")
    assert drawn.size[1] == plain.size[1] and drawn.size[0] >= plain.size[0]


def test_damaged_recogniser_is_one_error_line_naming_it(pages, tmp_path, monkeypatch):
    from dbcli.recognition import model as rec_model

    for shipped in (rec_model.RECOGNIZER, rec_model.CLASSIFIER):
        (tmp_path / shipped.file).write_bytes(shipped.path.read_bytes()[:5000])
    monkeypatch.setattr(rec_model, "weights_dir", lambda: tmp_path)
    for command in (["detect", "--text"], ["ocr"]):
        result = invoke(*command, pages / "receipt.png", *MODEL)
        assert result.exit_code != 0 and "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and str(tmp_path / rec_model.RECOGNIZER.file) in errors[0] and "damaged" in errors[0]


def test_text_on_the_onnx_backend_never_imports_torch(pages, model_files, tmp_path):
    from generated_files import TORCH_BLOCKER

    script = tmp_path / "no_torch.py"
    script.write_text(TORCH_BLOCKER)
    root = str(Path(__file__).resolve().parents[2])
    for command in (["detect", "--text", "--out", str(tmp_path / "o.json")], ["ocr"]):
        proc = subprocess.run([sys.executable, str(script), *command, str(pages / "receipt.png"), "--backend", "onnx",
                               "--weights", str(model_files["onnx"])], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": root})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "TORCH_MODULES=\n" in proc.stderr or proc.stderr.rstrip().endswith("TORCH_MODULES=")
    assert json.loads((tmp_path / "o.json").read_text())["settings"]["text"] is True
