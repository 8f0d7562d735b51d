"""The scale policy and tiling (dbcli.engine.scale_policy, dbcli.engine.tiling): small text on
large generated pages is found where the old fixed scale loses it, a line across tile seams comes out
once and whole, the JSON records each image's scale, and tiles keep memory bounded."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import invoke
from planted_model import match_rects, planted_files, rect_image

from dbcli.backends.loading import load_model
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.scale_policy import (
    MAX_PIXELS,
    MIN_GAIN,
    capped_note,
    choose,
    first_pass_evidence,
    network_size,
    probe_windows,
    rescale_cap,
)
from dbcli.engine.settings import Settings
from dbcli.engine.tiling import detect_at_scale, owned_ranges, tile_starts
from dbcli.imaging import MEAN, STD
from dbcli.postprocess.boxes import Detection, PostConfig, detections_and_candidates

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.pages import coverage, layout_page, precision, text_page  # noqa: E402  (pages with known word boxes)

POST = PostConfig(thresh=0.3, box_thresh=0.5)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


class Darkness:
    """A stand-in network: P = darkness of each pixel, smoothed a little (what the planted model
    computes, without the network); records the input shapes it was given."""

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        gray = (batch * STD[None, :, None, None] + MEAN[None, :, None, None]).mean(axis=1) / 255.0
        dark = np.clip(1.0 - gray, 0, 1).astype(np.float32)
        out = np.stack([cv2.blur(d, (3, 3)) for d in dark])
        return 1.0 / (1.0 + np.exp(-12.0 * (out - 0.5)))


def word_rows(width: int, height: int, bar: int, pitch: int, region=None, seed: int = 0):
    """Dark bars ``bar`` px tall (words) in rows ``pitch`` px apart inside ``region`` (x0, y0, x1,
    y1; default the page less a margin): ``(x0, y0, x1, y1)`` each."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = region or (40, 40, width - 40, height - 40)
    rects = []
    for y in range(y0, y1 - bar, pitch):
        x = x0
        while True:
            w = int(rng.integers(3, 9)) * bar
            if x + w > x1:
                break
            rects.append((x, y, x + w, y + bar))
            x += w + 2 * bar
    return rects


def recall(detections, rects) -> float:
    """Share of ``rects`` whose centre lies inside exactly one detection at most 3x as tall as it (a
    blob over several lines does not count)."""
    hits = 0
    outlines = [np.asarray(d.points, np.float32).reshape(-1, 1, 2) for d in detections]
    heights = [min(cv2.minAreaRect(o)[1]) for o in outlines]
    for x0, y0, x1, y1 in rects:
        c = ((x0 + x1) / 2, (y0 + y1) / 2)
        inside = [cv2.pointPolygonTest(o, c, False) >= 0 and h <= 3 * (y1 - y0) for o, h in zip(outlines, heights)]
        hits += sum(inside) == 1
    return hits / len(rects)


# --- tiling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [100, 512, 513, 1000, 1536, 5000])
def test_tiles_cover_the_side_and_seams_split_the_overlaps(length):
    starts = tile_starts(length, 512, 128)
    assert starts[0] == 0 and (starts[-1] + 512 >= length)
    assert all(b - a <= 512 - 128 for a, b in zip(starts, starts[1:]))  # neighbours overlap by >= 128
    owned = owned_ranges(starts, 512, length)
    assert owned[0][0] == 0 and owned[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(owned, owned[1:]))  # a partition of the side
    for s, (a, b) in zip(starts, owned):  # each pixel from a tile that sees >= 64 px around it
        assert s <= a and b <= s + 512
        assert a == 0 or a - s >= 64
        assert b == length or s + 512 - b >= 64


def test_a_line_across_seams_comes_out_once_and_whole():
    """Long lines crossing vertical seams, lines on horizontal seams and words inside tiles: tiled
    detection (tiles of 256 px, overlap 64) gives the same regions as the whole map."""
    width, height = 1400, 1000
    rects = [(30, 250, 1370, 266),  # across every vertical seam, near the first horizontal seam
             (100, 380, 1200, 400),  # across the horizontal seam at y ~ 384
             (200, 573, 700, 590), (650, 700, 690, 712), (20, 960, 300, 980)]
    rects += word_rows(width, height, 10, 37, region=(40, 20, 1360, 230))
    image = rect_image(width, height, rects)
    size = network_size(height, width, 1.0)
    fake = Darkness()
    whole = detect_at_scale(fake, image, size, POST, tile=2048)
    tiled = detect_at_scale(fake, image, size, POST, tile=256, overlap=64, margin=48)
    assert whole.tiles_run == 1 and tiled.tiles_run > 20
    assert match_rects([d.to_dict() for d in whole.detections], rects)
    assert match_rects([d.to_dict() for d in tiled.detections], rects)  # each once, covering it
    key = sorted(tuple(np.round(d.points.mean(axis=0))) for d in tiled.detections)
    assert key == sorted(tuple(np.round(d.points.mean(axis=0))) for d in whole.detections)
    long_line = [d for d in tiled.detections if d.points[:, 0].max() - d.points[:, 0].min() > 1300]
    assert len(long_line) == 1  # one region, not pieces


def test_tiles_are_bounded_and_blank_tiles_are_skipped():
    """The network sees tiles of at most tile x tile pixels; blank paper is not run."""
    image = rect_image(3000, 2000, [(2500, 1700, 2800, 1716)])
    image[:] = 240  # flat paper ...
    image[1700:1716, 2500:2800] = 20  # ... with one word in a corner
    fake = Darkness()
    result = detect_at_scale(fake, image, (2000, 3008), POST, tile=512, overlap=128)
    assert all(s[0] == 1 and s[2] <= 512 and s[3] <= 512 for s in fake.shapes)
    assert result.tiles_run == len(fake.shapes) <= 4 and result.tiles_blank > 20
    assert len(result.detections) == 1 and result.prob is None  # the map is never held whole


# --- the policy -----------------------------------------------------------------------------------
def test_rescale_cap_bounds_the_rerun():
    assert rescale_cap(720, 1280) == 1.0
    for h, w in ((12000, 12000), (3, 20000), (8000, 8000), (20000, 20000)):
        f = rescale_cap(h, w)
        nh, nw = network_size(h, w, f)
        assert nh * nw <= MAX_PIXELS * 1.01 and max(nh, nw) <= 16384 + 32


def test_probe_windows_find_the_ink():
    image = np.full((4000, 5000, 3), 245, np.uint8)
    image[3000:3300, 600:1400] = rect_image(800, 300, word_rows(800, 300, 8, 20, region=(0, 0, 800, 300)))
    (x, y), *_ = probe_windows(image, 736, 2)
    assert x <= 600 + 400 <= x + 736 and y <= 3150 <= y + 736


def test_ordinary_images_keep_the_first_pass():
    """No re-run for an image the first pass did not shrink, nor for one whose text it found at a good
    height (the policy then costs nothing)."""
    fake = Darkness()
    photo = rect_image(1280, 720, word_rows(1280, 720, 40, 90))
    first = detect_at_scale(fake, photo, network_size(720, 1280, 736 / 720), POST).detections
    assert choose(fake, photo, 736 / 720, first, POST).factor is None
    big = rect_image(2400, 1800, word_rows(2400, 1800, 60, 140))
    factor = 736 / 1800
    first = detect_at_scale(fake, big, network_size(1800, 2400, factor), POST).detections
    fake.shapes.clear()
    choice = choose(fake, big, factor, first, POST)
    assert choice.factor is None and choice.reason == "text large enough" and not fake.shapes  # no probe


def _page(width, height, dense: bool):
    if dense:
        rects = word_rows(width, height, 8, 30)
    else:  # a small form in one corner of a blank page
        rects = word_rows(width, height, 8, 30, region=(width - 700, height - 500, width - 60, height - 60))
    image = rect_image(width, height, rects)
    return image, rects


@pytest.fixture(scope="module")
def general():
    return load_model("general", "onnx", "cpu")


@pytest.mark.parametrize("dense", [False, True])
def test_small_text_on_a_large_page_is_found(general, dense):
    """Rendered words 10 px tall (capitals) on a 2600x2000 page, the shipped ``general`` weights: at
    the old fixed scale (short side 736: 3.7 px) the words are lost; the policy re-runs the page at
    native resolution in tiles and finds them (sparse: one form in a corner of blank paper; dense:
    the whole page)."""
    if dense:
        image, words = text_page(2600, 2000, 10, seed=3)
    else:
        image, words = text_page(2600, 2000, 10, blocks=1, block_size=(700, 500), seed=4)
        image = np.roll(image, (700, 900), axis=(0, 1))  # the form off-centre, across the tile seams
        words = [(x0 + 900, y0 + 700, x1 + 900, y1 + 700) for x0, y0, x1, y1 in words]
    fixed = next(run_pipeline([image], general, Settings(short_side=736)))
    auto = next(run_pipeline([image], general, Settings(short_side=736, scale_policy="auto")))
    assert coverage(words, [d.points for d in fixed.detections]) < 0.3
    assert coverage(words, [d.points for d in auto.detections]) >= 0.97
    assert fixed.scale["policy"] == "fixed" and auto.scale["policy"] == "auto"
    assert auto.scale["factor"] >= MIN_GAIN * fixed.scale["factor"] and auto.scale["tiles"] > 1
    assert auto.scale["reason"].startswith("small text")


def test_the_json_records_the_scale_per_image(model_files, tmp_path):
    page, _ = _page(1700, 1300, dense=False)
    big, small = tmp_path / "page.png", tmp_path / "small.png"
    cv2.imwrite(str(big), page[:, :, ::-1])
    cv2.imwrite(str(small), rect_image(200, 150, [(30, 40, 160, 75)])[:, :, ::-1])
    out, fixed_out = tmp_path / "auto.json", tmp_path / "fixed.json"
    assert invoke("detect", big, small, "--weights", model_files["onnx"], "--out", out).exit_code == 0
    assert invoke("detect", big, small, "--weights", model_files["onnx"], "--out", fixed_out,
                  "--short-side", "256").exit_code == 0
    auto, fixed = json.loads(out.read_text()), json.loads(fixed_out.read_text())
    assert auto["settings"]["scale_policy"] == "auto" and fixed["settings"]["scale_policy"] == "fixed"
    scales = {e["file"].rsplit("/", 1)[-1]: e["scale"] for e in auto["images"]}
    assert scales["page.png"]["factor"] >= MIN_GAIN * 256 / 1300 and scales["page.png"]["reason"].startswith("small")
    assert scales["small.png"]["factor"] > 1  # small images are upscaled as before, once
    assert all(e["scale"]["policy"] == "fixed" for e in fixed["images"])
    counts = {e["file"].rsplit("/", 1)[-1]: len(e["detections"]) for e in auto["images"]}
    fixed_counts = {e["file"].rsplit("/", 1)[-1]: len(e["detections"]) for e in fixed["images"]}
    assert counts["small.png"] == fixed_counts["small.png"] == 1
    assert counts["page.png"] > 20 * max(1, fixed_counts["page.png"])


# --- evidence: blobs are not text -----------------------------------------------------------------
def _box(x, y, w, h, score):
    return Detection(np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64), score)


def _lines(n, height, score=0.99, length=None, y0=0):
    return [_box(10, y0 + 3 * height * k, length or 8 * height, height, score) for k in range(n)]


@pytest.mark.parametrize("regions, strong", [
    (_lines(5, 10), True),  # sure, long, similar heights: text lines
    (_lines(5, 10, score=0.85), False),  # a grey texture: blobs over several lines score lower
    (_lines(5, 10, length=10), False),  # as long as tall
    (_lines(2, 10), False),  # too few
    (_lines(3, 10) + _lines(4, 10, score=0.8, y0=500), False),  # lines outnumbered by blobs
    (_lines(3, 10) + _lines(3, 40, y0=500) + _lines(1, 80, y0=900), False),  # heights that disagree
    (_lines(12, 10) + _lines(2, 30, y0=500), True),  # a page with two headlines
])
def test_first_pass_evidence(regions, strong):
    assert first_pass_evidence(regions, 1.0).strong is strong


def test_the_evidence_note_says_why_it_was_weak():
    two_sizes = first_pass_evidence(_lines(4, 10) + _lines(4, 40, y0=500), 1.0)
    assert two_sizes.note() == "8 first-pass regions, 8 like text lines of disagreeing heights"
    blobs = first_pass_evidence(_lines(4, 10, score=0.8), 1.0)
    assert blobs.note() == "4 first-pass regions, 0 like text lines" and not blobs.strong


def _blob_map(size: int = 736) -> np.ndarray:
    """A first pass's probability map of a heavily shrunk form: four huge regions of grey texture
    (0.55-0.95, what lines of tiny text melt into), each over many lines, no text line."""
    rng = np.random.default_rng(5)
    prob = np.zeros((size, size), np.float32)
    for x, y, w, h in ((100, 120, 160, 40), (300, 120, 200, 30), (100, 300, 120, 90), (400, 420, 150, 45)):
        prob[y:y + h, x:x + w] = rng.uniform(0.55, 0.95, (h, w))
    return cv2.blur(prob, (3, 3))


def test_a_few_blobs_on_a_shrunk_page_make_a_probe_decide():
    """A 7360x7360 page of small words (bars 12 px tall) first run at 0.1 whose first pass found four
    blobs 30-90 px tall at that scale: the old rule (>= 3 regions: trust their median) would take
    them for big text; the policy probes instead, and the probe's answer (the words'
    height at native resolution) sets the scale. Regions of a text line's score count, once there are
    more than a handful."""
    page = np.full((7360, 7360, 3), 245, np.uint8)
    page[3000:4000, 2000:3000] = rect_image(1000, 1000, word_rows(1000, 1000, 12, 30, region=(0, 0, 1000, 1000)))
    blobs, _ = detections_and_candidates(_blob_map(), 7360, 7360, POST)
    assert len(blobs) >= 4 and not first_pass_evidence(blobs, 0.1).strong
    fake = Darkness()
    choice = choose(fake, page, 0.1, blobs, POST)
    assert fake.shapes and choice.reason.startswith("small text (probe: ")  # probed, and says why
    assert "0 like text lines" in choice.reason and choice.factor is not None
    assert choice.factor == pytest.approx(20 / choice.text_height) and choice.factor > 0.7  # words ~12 px -> ~20
    sure = [Detection(d.points, 0.99) for d in blobs]  # the same shapes, scored like text lines ...
    fake.shapes.clear()
    assert choose(fake, page, 0.1, sure, POST).reason.startswith("small text (probe: 4 first-pass regions, ")
    assert fake.shapes  # ... are still a handful on a page shrunk 10x: probed
    sure += [Detection(d.points + (3600, 3600), 0.99) for d in sure]  # twice as many: trusted
    fake.shapes.clear()
    trusted = choose(fake, page, 0.1, sure, POST)
    assert not fake.shapes and trusted.reason == "text large enough" and trusted.factor is None


def _canvas_page(kind: str, canvas: int, doc: tuple[int, int], text_height: int, background: str = "blank"):
    return layout_page(dict(canvas=(canvas, canvas), background=background, shadow=background == "desk",
                            docs=[(kind, doc, text_height, (0.3, 0.6))], seed=text_height + doc[0]))


class Counting:
    """A backend that counts the network inputs it ran (the policy's probes and re-runs)."""

    def __init__(self, backend):
        self.backend, self.calls = backend, 0

    def __call__(self, batch):
        self.calls += 1
        return self.backend(batch)


@pytest.mark.parametrize("kind, canvas, doc, text_height, background", [
    ("paragraphs", 4000, (500, 650), 10, "blank"),  # the old rule: 5 blobs trusted, x0.44, 59% of the words
    ("form", 3000, (500, 650), 12, "desk"),  # a photographed form on a desk
])
def test_a_small_document_on_a_big_canvas_is_read(general, kind, canvas, doc, text_height, background):
    """A small document (a dense column of text, a form with boxes and ruled lines) on a big blank or
    textured canvas, the shipped ``general`` weights: the heavily shrunk first pass sees blobs at best;
    the policy probes and reads >= 97% of the words, with no more false regions than on a page."""
    image, words = _canvas_page(kind, canvas, doc, text_height, background)
    auto = next(run_pipeline([image], general, Settings(short_side=736, scale_policy="auto")))
    polys = [d.points for d in auto.detections]
    assert auto.scale["reason"].startswith("small text (probe") and auto.scale["factor"] == 1.0
    assert coverage(words, polys) >= 0.97 and precision(words, polys) >= 0.9


def test_ordinary_pages_keep_their_decision(general):
    """A page whose text the first pass reads at a good height (paragraphs and a form, 40 and 36 px
    text on 2000-2480 px pages): text-like evidence, no probe, no re-run, the first pass's regions."""
    for kind, size, text_height in (("paragraphs", (2000, 2600), 40), ("form", (2480, 3508), 36)):
        image, words = layout_page(dict(canvas=size, docs=[(kind, size, text_height, (0, 0))], seed=2))
        counting = Counting(general.prob_fn)
        model = dataclasses.replace(general, prob_fn=counting)
        auto = next(run_pipeline([image], model, Settings(short_side=736, scale_policy="auto")))
        fixed = next(run_pipeline([image], general, Settings(short_side=736)))
        assert auto.scale["reason"] == "text large enough" and counting.calls == 1  # the first pass alone
        assert [d.points.tolist() for d in auto.detections] == [d.points.tolist() for d in fixed.detections]
        assert coverage(words, [d.points for d in auto.detections]) >= 0.97


def test_the_page_generators_know_their_words():
    """The layouts' oracle: every word box holds ink and lies inside its document on the canvas; the
    boxes themselves score coverage 1 and precision 1; a blob over several lines and a detection of
    a ruled line or of the desk score 0."""
    docs = [("form", (500, 650), 12, (1.0, 1.0)), ("table", (400, 300), 10, (0, 0)),
            ("paragraphs", (400, 300), 9, (0, 1))]
    image, words = layout_page(dict(canvas=(1200, 1000), background="desk", shadow=True, docs=docs, seed=1))
    assert image.shape == (1000, 1200, 3) and len(words) > 100
    assert all(image[y0:y1, x0:x1].min() < 100 for x0, y0, x1, y1 in words)  # ink in each box
    quads = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) for x0, y0, x1, y1 in words]
    assert coverage(words, quads) == 1.0 and precision(words, quads) == 1.0
    x0, y0, x1, y1 = words[len(words) // 2]
    blob = np.array([[x0, y0 - 40], [x0 + 200, y0 - 40], [x0 + 200, y1 + 40], [x0, y1 + 40]], np.float64)
    desk = np.array([[600, 20], [700, 20], [700, 40], [600, 40]], np.float64)  # above the form: bare desk
    rule = np.array([[20, 16], [380, 16], [380, 24], [20, 24]], np.float64)  # the table's top rule
    assert precision(words, [blob, desk, rule]) == 0.0 and coverage([words[len(words) // 2]], [blob]) == 0.0


def test_a_page_whose_rerun_is_capped_says_its_text_may_be_unreadable(monkeypatch):
    """A page so large that the re-run for its small text is capped (``MAX_PIXELS``, here lowered so
    a 2000x2000 page stands for a 400-megapixel one) far below the scale its text needs: the choice
    carries a note naming the size, the scale wanted and the cap. The same page with a cap that lets
    the text reach a readable height has none."""
    import dbcli.engine.scale_policy as policy

    monkeypatch.setattr(policy, "MAX_PIXELS", 250_000)  # cap 0.25: 16 px words -> 4 px (boxes ~9 px)
    page = rect_image(2000, 2000, word_rows(2000, 2000, 16, 48))
    choice = choose(Darkness(), page, 0.1, [], POST)
    assert choice.factor == pytest.approx(rescale_cap(2000, 2000)) == pytest.approx(0.25, abs=0.01)
    assert choice.note and "2000x2000 pixels" in choice.note and "capped at 0.25" in choice.note
    assert "may be unreadable" in choice.note
    larger = rect_image(2000, 2000, word_rows(2000, 2000, 24, 72))  # 24 px words -> boxes ~14 px: read
    assert choose(Darkness(), larger, 0.1, [], POST).note is None
    assert capped_note(2000, 2000, wanted=0.5, cap=0.4) is None  # 16 px: readable, no note
