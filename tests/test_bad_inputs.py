"""Bad input files are one named warning and skipped: truncated JPEGs and PNGs, files only OpenCV
reads, animated and multi-page files (first frame), decompression bombs refused from the header,
an empty INPUT; large images leave Pillow in strips. Every input is a small generated file; the
detector is the planted model of tests/planted_model.py or a fake ``prob_fn``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from generated_files import gray_png, invoke, noisy_jpeg, warnings_about, write_rgb
from PIL import Image
from planted_model import planted_files, rect_image

from dbcli.data.datasets import load_samples
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import evaluate_model
from dbcli.imaging import decode_image, read_image
from dbcli.inference.inputs import expand_inputs
from dbcli.inference.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



# --- 1. truncated files ---------------------------------------------------------------------------
def test_truncated_jpeg_is_a_named_warning_and_skipped(model_files, tmp_path, capfd):
    data = noisy_jpeg()
    (tmp_path / "cut.jpg").write_bytes(data[:5000])
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "no_eoi.jpg").write_bytes(data[:-2])
    good = write_rgb(tmp_path / "good.png")
    out = tmp_path / "out.json"
    capfd.readouterr()
    result = invoke("detect", good, tmp_path / "cut.jpg", tmp_path / "half.jpg", tmp_path / "no_eoi.jpg",
                    "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("cut.jpg", "half.jpg", "no_eoi.jpg"):
        lines = warnings_about(result, name)
        assert len(lines) == 1 and "truncated" in lines[0] and "skipped" in lines[0], result.stderr
    assert [Path(e["file"]).name for e in json.loads(out.read_text())["images"]] == ["good.png"]
    assert "3 skipped" in result.stderr
    # nothing from libjpeg / libpng / OpenCV on the real stderr: our warning is the one line
    captured = capfd.readouterr()
    assert "Premature end" not in captured.err + captured.out and "libpng" not in captured.err
    with pytest.raises(DBNetError, match=r"cut\.jpg: truncated image file"):
        read_image(tmp_path / "cut.jpg")


def test_truncated_png_is_refused_without_libpng_chatter(tmp_path, capfd):
    png = cv2.imencode(".png", rect_image(300, 200, [(20, 30, 200, 90)]))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    capfd.readouterr()
    with pytest.raises(DBNetError, match=r"cut\.png: "):
        read_image(tmp_path / "cut.png")
    captured = capfd.readouterr()
    assert "libpng" not in captured.err and "libpng" not in captured.out


def test_eval_skips_a_truncated_image(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cut.jpg").write_bytes(noisy_jpeg()[:5000])
    write_rgb(root / "good.png")
    poly = [[30, 40], [160, 40], [160, 75], [30, 75]]
    (root / "test.jsonl").write_text("".join(json.dumps({"image": n, "polygons": [poly]}) + "\n"
                                             for n in ("cut.jpg", "good.png")))
    samples = load_samples("custom", root, "test")
    messages = []
    result = evaluate_model(samples, lambda b: np.zeros((b.shape[0], *b.shape[2:]), np.float32),
                            settings=Settings(short_side=64), warn=messages.append)
    assert [Path(p).name for p in result.skipped] == ["cut.jpg"]
    assert result.scores.num_images == 1 and result.scores.num_gt == 1  # its ground truth is not a miss
    assert any("cut.jpg" in m and "truncated" in m for m in messages)


def test_opencv_still_reads_what_pillow_cannot(tmp_path):
    """A float32 colour TIFF: Pillow cannot identify it, OpenCV reads it (the fallback is kept)."""
    rgb = rect_image(200, 150, [(30, 40, 160, 75)])
    path = tmp_path / "float.tif"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.float32) / 255.0)
    with pytest.raises(Exception):  # noqa: B017 (whatever Pillow raises for a float TIFF)
        Image.open(path).load()
    image = read_image(path)
    assert image.shape == (150, 200, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb).max() <= 1


def test_first_frame_note_for_animated_and_multipage_files(model_files, tmp_path):
    frames = [Image.fromarray(rect_image(200, 150, [(30, 40 + 20 * i, 160, 75 + 20 * i)])) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    write_rgb(tmp_path / "single.png")
    _, notes = decode_image(tmp_path / "anim.gif")
    assert len(notes) == 1 and "first frame" in notes[0] and "anim.gif" in notes[0]
    assert decode_image(tmp_path / "single.png")[1] == []
    result = invoke("detect", tmp_path, "--weights", model_files["onnx"], "--out", tmp_path / "o.json")
    assert result.exit_code == 0, result.output
    for name in ("anim.gif", "pages.tif"):
        lines = warnings_about(result, name)
        assert len(lines) == 1 and "first frame" in lines[0], result.stderr
    assert not warnings_about(result, "single.png")
    assert len(json.loads((tmp_path / "o.json").read_text())["images"]) == 3


# --- 3. decompression bombs -----------------------------------------------------------------------
def test_decompression_bomb_is_refused_by_one_policy(model_files, tmp_path, capfd):
    bomb = gray_png(tmp_path / "bomb.png", 15000, 15000, value=0)  # 225 megapixels in ~0.2 MB
    assert bomb.stat().st_size < 2_000_000
    good = write_rgb(tmp_path / "good.png")
    out = tmp_path / "o.json"
    capfd.readouterr()
    result = invoke("detect", bomb, good, "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    lines = warnings_about(result, "bomb.png")
    assert len(lines) == 1 and "225 megapixels" in lines[0] and "--max-megapixels" in lines[0], result.stderr
    assert "DecompressionBomb" not in result.output
    captured = capfd.readouterr()
    assert "DecompressionBomb" not in captured.err
    assert [Path(e["file"]).name for e in json.loads(out.read_text())["images"]] == ["good.png"]
    # the limit is an option: a lower one refuses an ordinary image, naming the option
    result = invoke("detect", good, "--weights", model_files["onnx"], "--max-megapixels", "0.01")
    assert result.exit_code == 1 and "--max-megapixels" in result.stderr


# --- 6. empty INPUT -------------------------------------------------------------------------------
def test_empty_input_is_refused(model_files, tmp_path, monkeypatch):
    write_rgb(tmp_path / "here.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DBNetError, match="empty INPUT"):
        expand_inputs([""])
    result = invoke("detect", "", "--weights", model_files["onnx"], "--out", tmp_path / "o.json")
    assert result.exit_code == 1 and "empty INPUT" in result.stderr
    assert not (tmp_path / "o.json").exists()


def test_large_images_are_copied_out_of_pillow_in_strips():
    from dbcli.imaging import pillow_to_numpy

    rgb = np.random.default_rng(0).integers(0, 256, (301, 257, 3), dtype=np.uint8)
    for mode, array in (("RGB", rgb), ("L", rgb[:, :, 0]), ("RGBA", np.dstack([rgb, rgb[:, :, :1]]))):
        img = Image.fromarray(np.ascontiguousarray(array), mode)
        assert np.array_equal(pillow_to_numpy(img, large=0, strip_pixels=5000), array), mode
