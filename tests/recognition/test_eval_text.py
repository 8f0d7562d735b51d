"""``dbnet eval --text`` on a 3-image custom set whose figures are computed by hand: the same rendered
page three times (read as "Invoice 4471", "TOTAL 12.50", "Thank you": 6 words, 32 characters), its
ground-truth boxes the detector's own (IoU 1), one transcription changed on the second image and one
region with nothing in it added on the third."""

from __future__ import annotations

import json

import pytest
from generated_files import invoke
from text_pages import PAGE_LINES, text_page

from dbcli import Detector
from dbcli.data.datasets import load_custom

MODEL = ["--weights", "general", "--backend", "torch", "--device", "cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-text")
    dets = Detector("general", backend="torch", device="cpu", sort="none")(text_page().convert("RGB")).detections
    boxes = sorted((d.points.round(1).tolist() for d in dets), key=lambda b: b[0][1])  # top to bottom
    assert len(boxes) == len(PAGE_LINES)
    lines = []
    for k, edit in enumerate([{}, {"Thank you": "Thank yoo"}, {}]):
        text_page().save(folder / f"page{k}.png")
        polygons = [{"points": box, "transcription": edit.get(text, text)}
                    for text, box in zip(PAGE_LINES, boxes)]
        if k == 2:  # a region where nothing is written
            polygons.append({"points": [[300, 200], [460, 200], [460, 240], [300, 240]], "transcription": "missing"})
        lines.append(json.dumps({"image": f"page{k}.png", "polygons": polygons}))
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "test.jsonl"


def test_custom_transcriptions_are_read(dataset):
    samples = load_custom(dataset, "test")
    assert samples[1].texts == ["Invoice 4471", "TOTAL 12.50", "Thank yoo"] and samples[2].texts[-1] == "missing"


def test_eval_text_figures_by_hand(dataset, tmp_path):
    result = invoke("eval", "--dataset", "custom", "--data-root", dataset, "--text", "--json", tmp_path / "e.json",
                    *MODEL)
    assert result.exit_code == 0, result.output
    text = json.loads((tmp_path / "e.json").read_text())["text"]
    e2e, words = text["end_to_end"], text["words"]
    # end to end: 3 + 2 + 3 correct of 9 detections and 3 + 3 + 4 ground-truth regions
    assert (e2e["correct"], e2e["detections"], e2e["ground_truth"]) == (8, 9, 10)
    assert e2e["precision"] == pytest.approx(8 / 9) and e2e["recall"] == pytest.approx(0.8)
    assert e2e["hmean"] == pytest.approx(16 / 19)
    # words: 6 + 5 + 6 correct of 18 read and 6 + 6 + 7 expected
    assert (words["correct"], words["read"], words["expected"]) == (17, 18, 19)
    assert words["f1"] == pytest.approx(2 * 17 / (18 + 19))
    # CER: "you" for "yoo" (1) and nothing for "missing" (7), over 32 + 32 + 39 characters
    assert (text["cer_distance"], text["cer_characters"]) == (8, 103) and text["cer"] == pytest.approx(8 / 103)
    assert "end to end hmean" in result.stdout and "0.8421" in result.stdout and "CER" in result.stdout


def test_eval_text_without_transcriptions_or_with_pred_is_refused(tmp_path):
    text_page().save(tmp_path / "p.png")
    (tmp_path / "test.jsonl").write_text(json.dumps({"image": "p.png", "polygons": [[[0, 0], [9, 0], [9, 9]]]}) + "\n")
    result = invoke("eval", "--dataset", "custom", "--data-root", tmp_path / "test.jsonl", "--text", *MODEL)
    assert result.exit_code != 0 and "needs transcriptions" in result.stderr and "p.png" in result.stderr
    result = invoke("eval", "--dataset", "custom", "--data-root", tmp_path / "test.jsonl", "--text", "--pred",
                    tmp_path / "x.json")
    assert result.exit_code != 0 and "--pred" in result.stderr
