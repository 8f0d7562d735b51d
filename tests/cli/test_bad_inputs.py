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
from generated_files import gray_png, invoke, noisy_jpeg, warnings_about, write_rgb
from PIL import Image
from planted_model import rect_image

from dbcli.data.datasets import load_samples
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import evaluate_model
from dbcli.imaging import decode_image, read_image
from dbcli.workflows.inputs import expand_inputs

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



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


# --- 7. FIFOs and other special files named as inputs (issue 25, class 3) -----------------------------
def test_a_fifo_named_directly_is_skipped_with_a_warning_never_opened(model_files, tmp_path):
    """A FIFO blocks whoever opens it until a writer comes: named directly, or in a folder, it is a
    warning naming it and never opened (a subprocess with a timeout: a hang fails the test)."""
    import os
    import subprocess
    import sys

    write_rgb(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "stream.jpg")
    out = tmp_path / "o.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "dbcli.cli", "detect", str(tmp_path / "pipe.png"),
                          str(tmp_path / "stream.jpg"), str(tmp_path), "--weights", str(model_files["onnx"]),
                          "--out", str(out)], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    for name in ("pipe.png", "stream.jpg"):
        lines = [line for line in run.stderr.splitlines() if name in line]
        assert len(lines) == 1 and "FIFO" in lines[0] and "skipped" in lines[0], run.stderr
    assert [Path(e["file"]).name for e in json.loads(out.read_text())["images"]] == ["good.png"]
    with pytest.raises(DBNetError, match=r"pipe\.png: a FIFO"):
        decode_image(tmp_path / "pipe.png")  # the API and datasets go through the decoder: refused there too
    with pytest.raises(DBNetError, match="a folder, not an image"):
        decode_image(tmp_path)


# --- 8. one decoding for files, PIL images and arrays (issue 25, class 4) ------------------------------
RECT = (30, 40, 160, 75)


def _transparent(mode: str) -> Image.Image:
    """A dark rectangle on a fully transparent (black) background: composited over white, as a viewer
    shows it, it is dark text on white; with its alpha dropped, all black."""
    rgba = np.zeros((150, 200, 4), np.uint8)
    x0, y0, x1, y1 = RECT
    rgba[y0:y1, x0:x1] = (20, 20, 20, 255)
    img = Image.fromarray(rgba, "RGBA")
    if mode == "LA":
        return img.convert("LA")
    if mode == "P":
        return _palette(rgba)
    return img


def _palette(rgba: np.ndarray) -> Image.Image:
    index = np.where(rgba[:, :, 3] > 0, 1, 0).astype(np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette([0, 0, 0, 20, 20, 20] + [0] * 762)
    img.info["transparency"] = 0
    return img


def _files(tmp_path: Path) -> dict[str, Path]:
    """The same picture stored as several awkward kinds of file."""
    rgb = rect_image(200, 150, [RECT])
    gray = rgb[:, :, 0]
    files = {}
    for mode in ("RGBA", "LA", "P"):
        files[mode] = tmp_path / f"{mode}.png"
        _transparent(mode).save(files[mode])
    files["I;16"] = tmp_path / "sixteen.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(files["I;16"])
    files["F"] = tmp_path / "unit.tif"
    Image.fromarray(gray.astype(np.float32) / 255.0, "F").save(files["F"])
    files["exif"] = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: a viewer turns it 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb))).save(files["exif"], exif=exif.tobytes(), quality=95)
    return files


def test_pil_images_decode_as_their_files(tmp_path):
    from dbcli.imaging import image_to_rgb

    for kind, path in _files(tmp_path).items():
        from_file, _ = decode_image(path)
        with Image.open(path) as img:
            from_pil, _ = image_to_rgb(img)
        assert np.array_equal(from_pil, from_file), kind
    # a transparent background is white, not black; a mode-F TIFF in [0, 1] is scaled, not black
    files = _files(tmp_path)
    assert decode_image(files["RGBA"])[0][5, 5].tolist() == [255, 255, 255]
    assert decode_image(files["P"])[0][5, 5].tolist() == [255, 255, 255]
    unit = decode_image(files["F"])[0]
    assert np.abs(unit.astype(int) - rect_image(200, 150, [RECT])[:, :, :1]).max() <= 1
    assert decode_image(files["exif"])[0].shape == (150, 200, 3)  # turned upright


def test_the_api_finds_in_a_pil_image_what_it_finds_in_its_file(model_files, tmp_path):
    from dbcli import Detector

    detector = Detector(model_files["onnx"], device="cpu")
    for kind, path in _files(tmp_path).items():
        expected = detector(path).to_dict()["detections"]
        assert len(expected) == 1, kind
        with Image.open(path) as img:
            assert detector(img).to_dict()["detections"] == expected, kind
    rgba = np.asarray(_transparent("RGBA"))
    assert detector(rgba).to_dict()["detections"] == detector(_files(tmp_path)["RGBA"]).to_dict()["detections"]
    with pytest.raises(DBNetError, match="uint8 RGB"):
        detector(np.zeros((10, 10, 2), np.uint8))


def test_float_arrays_with_nan_decode_without_garbage():
    from dbcli.imaging import to_rgb_uint8

    array = np.full((4, 4), 0.5, np.float32)
    array[0, 0] = np.nan
    out = to_rgb_uint8(array)
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [128, 128, 128]
    assert to_rgb_uint8(np.full((2, 2), 70000, np.int32)).max() == 255  # 32-bit: scaled by its maximum


# --- 9. folders: one list of extensions, unreadable sub-folders (issue 25, class 6) -------------------
def test_formats_decoded_when_named_are_found_inside_folders(tmp_path):
    from PIL import features

    from dbcli.imaging import IMAGE_EXTENSIONS

    img = Image.fromarray(rect_image(64, 48, [(8, 8, 40, 30)]))
    written = []
    for ext, codec in ((".jp2", "jpg_2000"), (".avif", "avif"), (".tga", None), (".pbm", None), (".qoi", None)):
        if codec is not None and not features.check(codec):
            continue
        target = tmp_path / "sub" / f"pic{ext}"
        target.parent.mkdir(exist_ok=True)
        (img.convert("1") if ext == ".pbm" else img).save(target)
        written.append(target)
        assert ext in IMAGE_EXTENSIONS
        assert decode_image(target)[0].shape == (48, 64, 3), ext
    found, problems = expand_inputs([tmp_path])
    assert sorted(found) == sorted(written) and not problems
    (tmp_path / "notes.txt").write_text("not an image")
    assert len(expand_inputs([tmp_path])[0]) == len(written)


def test_an_unreadable_sub_folder_is_named_not_skipped_silently(model_files, tmp_path, monkeypatch):
    import os

    write_rgb(tmp_path / "good.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    write_rgb(locked / "hidden.png")
    real_scandir = os.scandir

    def scandir(path="."):  # (as root, chmod 000 would not stop the walk: refuse it here instead)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, problems = expand_inputs([tmp_path])
    assert found == [tmp_path / "good.png"]
    assert len(problems) == 1 and str(locked) in problems[0] and "Permission denied" in problems[0]
    result = invoke("detect", tmp_path, "--weights", model_files["onnx"], "--out", tmp_path / "o.json")
    assert result.exit_code == 0 and len(warnings_about(result, "locked")) == 1, result.stderr


def _corrupt_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF has an upright orientation and a tag whose data lies past the end of the block."""
    import struct

    tiff = (b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 0x0112, 3, 1, 1)
            + struct.pack("<HHII", 0x010E, 2, 100, 1000) + struct.pack("<I", 0))
    Image.fromarray(rect_image(200, 150, [RECT])).save(path, exif=b"Exif\x00\x00" + tiff, quality=95)
    return path


def test_corrupt_exif_is_one_named_warning_not_raw_pillow_lines(model_files, tmp_path, capfd):
    bad = _corrupt_exif_jpeg(tmp_path / "bad_exif.jpg")
    image, notes = decode_image(bad)
    assert image.shape == (150, 200, 3)
    assert len(notes) == 1 and "bad_exif.jpg" in notes[0] and "metadata" in notes[0]
    capfd.readouterr()
    out = tmp_path / "o.json"
    result = invoke("detect", bad, "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    assert len(warnings_about(result, "bad_exif.jpg")) == 1, result.stderr
    captured = capfd.readouterr()
    assert "UserWarning" not in captured.err + result.stderr
    assert len(json.loads(out.read_text())["images"][0]["detections"]) == 1
