"""Text recognition (dbcli.recognition): rendered crops read back, greedy CTC by hand, bad input, and
parity with the source package's own recogniser (skipped when ``rapidocr`` is not installed)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from dbcli.errors import DBNetError
from dbcli.recognition import Reading, Recognizer, ctc_greedy_decode
from dbcli.recognition import model as rec_model
from dbcli.recognition.preprocess import buckets, split_points

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
WORDS = ["Hello", "receipt", "TOTAL", "Welcome"]
DIGITS = ["2026-12-07", "12.50", "0049 30 1234567"]
PUNCT = ["Invoice #4471: paid (cash)!", "Qty x2 @ $3.99", "e-mail: ann@example.com"]
LONG = "The quick brown fox jumps over the lazy dog while the cat sleeps"


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(DEJAVU), size) if DEJAVU.exists() else ImageFont.load_default(size=size)


def render(text: str, size: int = 28, pad: int = 8) -> np.ndarray:
    """``text`` in black on white, one line, ``(h, w, 3)`` uint8 RGB cropped tightly plus ``pad`` px."""
    f = font(size)
    x0, y0, x1, y1 = f.getbbox(text)
    image = Image.new("RGB", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), "white")
    ImageDraw.Draw(image).text((pad - x0, pad - y0), text, fill="black", font=f)
    return np.array(image)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(threads=1)


@pytest.mark.parametrize("text", WORDS + DIGITS + PUNCT)
def test_reads_rendered_strings(recognizer, text):
    (reading,) = recognizer([render(text)])
    assert reading.text == text
    assert 0.8 < reading.score <= 1.0


def test_batch_of_mixed_widths_reads_each_in_order(recognizer):
    texts = WORDS + DIGITS + PUNCT + [LONG]
    readings = recognizer([render(t) for t in texts])
    assert [r.text for r in readings] == texts


def test_upside_down_crop_is_turned(recognizer):
    crop = render("Upside down 42")[::-1, ::-1]
    assert recognizer([crop])[0].text == "Upside down 42"


def test_upside_down_long_line_is_turned(recognizer):
    assert recognizer([render(LONG)[::-1, ::-1]])[0].text == LONG


def test_without_direction_an_upside_down_crop_reads_wrong():
    from dbcli.recognition.recognizer import RecognizerSettings
    plain = Recognizer(settings=RecognizerSettings(direction=False), threads=1)
    assert plain([render("Upside down 42")[::-1, ::-1]])[0].text != "Upside down 42"


def test_low_score_crops_are_reread_turned_when_the_classifier_misses():
    from dbcli.recognition.recognizer import RecognizerSettings
    crop = render("Upside down 42")[::-1, ::-1]
    never_turns = RecognizerSettings(direction_threshold=1.01)  # the classifier alone turns nothing
    assert Recognizer(settings=never_turns, threads=1)([crop])[0].text == "Upside down 42"
    no_recheck = RecognizerSettings(direction_threshold=1.01, recheck_below=0.0)
    assert Recognizer(settings=no_recheck, threads=1)([crop])[0].text != "Upside down 42"


def test_very_long_aspect_crop_is_split_and_read(recognizer):
    text = " ".join([LONG, LONG.upper(), LONG, "and 1234567890"])
    crop = render(text, size=20)
    assert crop.shape[1] / crop.shape[0] > 60  # past max_aspect 60: cut into pieces
    assert split_points(crop, 60.0)
    reading = recognizer([crop])[0]
    assert reading.text == text
    assert reading.score > 0.8


@pytest.mark.parametrize("crop", [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 40, 3), np.uint8),
                                  np.full((1, 1, 3), 200, np.uint8), np.full((30, 90, 3), 255, np.uint8),
                                  np.zeros((1, 300, 3), np.uint8)], ids=["empty", "no-rows", "1px", "flat", "1-row"])
def test_empty_tiny_or_flat_crops_read_empty(recognizer, crop):
    assert recognizer([crop]) == [Reading("", 0.0)]


def test_tiny_text_crop_reads_without_crashing(recognizer):
    (reading,) = recognizer([render("ok 7", size=6, pad=1)])
    assert isinstance(reading.text, str) and 0.0 <= reading.score <= 1.0


def test_thin_very_long_crop_reads_in_pieces_without_crashing(recognizer):
    crop = np.random.default_rng(0).integers(0, 256, (3, 3000, 3), dtype=np.uint8)  # aspect 1000
    assert len(split_points(crop, 60.0)) >= 16
    (reading,) = recognizer([crop])
    assert isinstance(reading.text, str) and 0.0 <= reading.score <= 1.0


def test_grey_and_rgba_crops_are_accepted(recognizer):
    rgb = render("Grey 12")
    assert recognizer([rgb[:, :, 0]])[0].text == "Grey 12"
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert recognizer([rgba])[0].text == "Grey 12"


def test_float_crop_is_a_one_line_error(recognizer):
    with pytest.raises(DBNetError, match="crop 1: expected uint8"):
        recognizer([render("a"), np.zeros((10, 10, 3), np.float32)])


def test_no_crops_gives_no_readings(recognizer):
    assert recognizer([]) == []


# --- greedy CTC by hand -------------------------------------------------------------------------------

TABLE = ["", "a", "b", "c", " "]


def onehot(indices, classes=5, p=0.9):
    probs = np.full((len(indices), classes), (1 - p) / (classes - 1), np.float32)
    probs[np.arange(len(indices)), indices] = p
    return probs


def test_ctc_merges_repeats_and_drops_blanks():
    assert ctc_greedy_decode(onehot([1, 1, 0, 2, 2, 2, 0, 0, 3]), TABLE).text == "abc"


def test_ctc_blank_between_repeats_keeps_both():
    assert ctc_greedy_decode(onehot([1, 0, 1, 4, 3, 0, 3]), TABLE).text == "aa cc"


def test_ctc_score_is_mean_of_kept_steps():
    probs = onehot([1, 1, 0, 2])
    probs[0, 1], probs[1, 1], probs[3, 2] = 0.6, 0.99, 0.8  # step 1 repeats step 0: only 0.6 and 0.8 count
    reading = ctc_greedy_decode(probs, TABLE)
    assert reading.text == "ab"
    assert reading.score == pytest.approx(0.7)


def test_ctc_all_blank_is_empty_with_zero_score():
    assert ctc_greedy_decode(onehot([0, 0, 0]), TABLE) == Reading("", 0.0)
    assert ctc_greedy_decode(np.zeros((0, 5), np.float32), TABLE) == Reading("", 0.0)


def test_ctc_classes_outside_the_dictionary_are_never_invented():
    # a model with 7 classes decoded against a 5-entry table: classes 5 and 6 are dropped, not mapped
    assert ctc_greedy_decode(onehot([1, 5, 2, 6, 6, 3], classes=7), TABLE).text == "abc"


# --- batching -----------------------------------------------------------------------------------------

def test_buckets_group_similar_widths_and_cover_every_crop():
    aspects = [10.0, 1.0, 1.2, 9.0, 1.1, 30.0]
    groups = buckets(aspects, batch_size=2, spread=1.5)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert all(len(g) <= 2 for g in groups)
    assert groups == [[1, 4], [2], [3, 0], [5]]


# --- damaged or missing model files -------------------------------------------------------------------

@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    for m in (rec_model.RECOGNIZER, rec_model.CLASSIFIER):
        shutil.copy(m.path, tmp_path / m.file)
    monkeypatch.setattr(rec_model, "weights_dir", lambda: tmp_path)
    return tmp_path


def test_damaged_shipped_model_is_a_one_line_error_naming_it(shipped_copy):
    path = shipped_copy / rec_model.RECOGNIZER.file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DBNetError) as err:
        Recognizer()
    assert str(path) in str(err.value) and "damaged" in str(err.value)
    assert "\n" not in str(err.value)


def test_damaged_direction_classifier_is_named(shipped_copy):
    path = shipped_copy / rec_model.CLASSIFIER.file
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DBNetError, match="damaged text direction classifier"):
        Recognizer()


def test_missing_model_is_named(tmp_path):
    with pytest.raises(DBNetError, match="nothing.onnx: text recogniser model not found"):
        Recognizer(tmp_path / "nothing.onnx")


def test_garbage_custom_model_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file at all")
    with pytest.raises(DBNetError) as err:
        Recognizer(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


# --- parity with the source package (rapidocr==3.10.0, which ships the same ONNX file) ----------------

def test_parity_with_rapidocr_recogniser(recognizer):
    rapidocr = pytest.importorskip("rapidocr")
    from rapidocr.ch_ppocr_rec import TextRecInput

    from dbcli.recognition.recognizer import RecognizerSettings
    theirs = rapidocr.RapidOCR()._load_rec_model()
    texts = WORDS + DIGITS + PUNCT + [LONG, "small text 3.50"]
    crops = [render(t, size=14 if t.startswith("small") else 28) for t in texts]
    out = theirs(TextRecInput(img=[np.ascontiguousarray(c[:, :, ::-1]) for c in crops]))  # they take BGR
    assert [r.text for r in recognizer(crops)] == list(out.txts)  # our defaults: same strings
    # batched as they batch (6 crops by aspect, padded to >= 320 px, no direction): the same scores too,
    # so our preprocessing and decoding are theirs
    same = Recognizer(settings=RecognizerSettings(batch_size=6, bucket_spread=1e9, direction=False), threads=1)
    ours = same(crops)
    assert [r.text for r in ours] == list(out.txts)
    assert np.allclose([r.score for r in ours], out.scores, atol=1e-4)


# --- torch-free -----------------------------------------------------------------------------------------

def test_recognition_reads_with_torch_blocked(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "no_torch.py"
    script.write_text(
        "import sys\n"
        "class BlockTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test: ' + name)\n"
        "sys.meta_path.insert(0, BlockTorch())\n"
        "import numpy as np\n"
        "from dbcli.recognition import Recognizer\n"
        "crop = np.full((40, 120, 3), 255, np.uint8)\n"
        "crop[15:25, 10:110] = 0\n"
        "print(type(Recognizer(threads=1)([crop])[0].text).__name__, 'torch' in sys.modules)\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["str", "False"]
