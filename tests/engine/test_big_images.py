"""Big images run in bounded memory: the network input's longer side is capped by default (with a
note), the test scale is bounded, a 12000x12000 photo and a 3x20000 strip (made by streaming zlib,
~0.5 MB on disk) run within 2 GB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from generated_files import gray_png, invoke, streamed_png, warnings_about, write_rgb

from dbcli.backends.loading import load_model
from dbcli.defaults import MAX_SIDE as DEFAULT_MAX_SIDE
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import resolve_settings
from dbcli.errors import DBNetError
from dbcli.imaging import inference_size

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



# --- 2. bounded memory ----------------------------------------------------------------------------
def test_inference_size_is_capped_by_default():
    assert inference_size(3, 10000) == (32, DEFAULT_MAX_SIDE)  # was (736, 2453344): 20 GiB of input
    assert inference_size(10000, 3, 736) == (DEFAULT_MAX_SIDE, 32)
    assert inference_size(12000, 12000) == (736, 736)
    assert inference_size(3, 10000, 736, 8192) == (32, 8192)  # an explicit --max-side wins
    for h, w in ((800, 1200), (1100, 850), (720, 1080), (768, 1024), (480, 2600)):  # normal photos: as before
        scale = 736 / min(h, w)
        assert inference_size(h, w) == (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))


def test_short_and_max_side_are_bounded(model_files, tmp_path):
    model = load_model(model_files["onnx"], "onnx", "cpu")
    with pytest.raises(DBNetError, match=r"--short-side must lie in \[32, 4096\]"):
        resolve_settings(model, InferenceOptions(short_side=100000))
    with pytest.raises(DBNetError, match="--max-side must lie in"):
        resolve_settings(model, InferenceOptions(max_side=10 ** 6))
    image = write_rgb(tmp_path / "a.png")
    result = invoke("detect", image, "--weights", model_files["onnx"], "--short-side", "100000")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "--short-side" in result.stderr


def test_long_strip_runs_with_a_note(model_files, tmp_path):
    strip = gray_png(tmp_path / "strip.png", 10000, 3, value=200)
    normal = write_rgb(tmp_path / "normal.png")
    out = tmp_path / "o.json"
    result = invoke("detect", strip, normal, "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    lines = warnings_about(result, "strip.png")
    assert len(lines) == 1 and "capped at 4096x32" in lines[0] and "--max-side" in lines[0], result.stderr
    assert not warnings_about(result, "normal.png")
    data = json.loads(out.read_text())
    assert [(e["width"], e["height"]) for e in data["images"]] == [(10000, 3), (200, 150)]
    assert data["settings"]["max_side"] is None  # what was asked; the default cap applies


MEMORY_SCRIPT = """
import resource, sys
from dbcli.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_huge_photo_and_long_strip_run_within_2gb(model_files, tmp_path):
    """A 12000x12000 photo (144 megapixels) and a 3x20000 strip, through the torch backend, in one
    process whose peak resident memory stays under 2 GB."""
    width = height = 12000
    white = b"\xff" * (3 * width)
    band = bytearray(white)
    band[3 * 2000: 3 * 9000] = b"\x10" * (3 * 7000)
    band = bytes(band)
    photo = streamed_png(tmp_path / "photo.png", width, height,
                         lambda y: band if 4000 <= y < 6000 else white)
    strip = gray_png(tmp_path / "strip.png", 20000, 3, value=90)
    out = tmp_path / "big.json"
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, "detect", str(photo), str(strip),
                           "--weights", str(model_files["pt"]), "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_gb = int(proc.stdout.split("MAXRSS_KB")[-1]) * 1024 / 1e9
    assert peak_gb < 2.0, f"peak RSS {peak_gb:.2f} GB"
    entries = json.loads(out.read_text())["images"]
    assert [(e["width"], e["height"]) for e in entries] == [(12000, 12000), (20000, 3)]
    assert len(entries[0]["detections"]) == 1  # the dark band is found, in original pixels
    xs = [p[0] for p in entries[0]["detections"][0]["points"]]
    assert min(xs) < 2300 and max(xs) > 8700
    assert "DecompressionBomb" not in proc.stderr


def test_the_cap_note_only_where_the_cap_shrinks_the_image():
    """A long strip that the default --max-side shrinks below its own size gets the note; a small wide
    image the cap leaves enlarged (300x30 run ~7x larger) does not: the cap costs it nothing."""
    from dbcli import defaults
    from dbcli.imaging import default_cap_note

    long_side = defaults.MAX_SIDE
    strip = default_cap_note(400, long_side * 3, 736, None)
    assert strip and "small text may be missed" in strip
    assert default_cap_note(30, 300, 736, None) is None  # run at 4096x416: enlarged ~14x
    assert default_cap_note(3, 10000, 736, None)  # a 3 px strip: enlarged in height, shrunk in length
    assert default_cap_note(30, 300, 736, 4096) is None  # a --max-side the user chose: no note either
