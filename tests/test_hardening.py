"""Issue 16: bad files, big images, decompression bombs, interrupts, concurrent writers, crashed
ranks. Every input is a small generated file (a 12000x12000 PNG is made by streaming zlib, ~0.5 MB
on disk); the detector is the planted model of tests/planted_model.py or a fake ``prob_fn``."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from planted_model import planted_files, rect_image
from typer.testing import CliRunner

from dbcli.cli import app
from dbcli.data.datasets import load_samples
from dbcli.defaults import MAX_SIDE as DEFAULT_MAX_SIDE
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import evaluate_model, evaluate_predictions
from dbcli.imaging import decode_image, inference_size, read_image
from dbcli.inference.backend import Model
from dbcli.inference.detect_files import DetectInterrupted
from dbcli.inference.detect_files import detect_files as detect
from dbcli.inference.inputs import expand_inputs
from dbcli.inference.loading import load_model
from dbcli.inference.options import InferenceOptions
from dbcli.inference.settings import Settings, resolve_settings
from dbcli.inference.writers import partial_path

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def warnings_about(result, name: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if name in line and "warning" in line]


def write_rgb(path: Path, width: int = 200, height: int = 150, rects=((30, 40, 160, 75),)) -> Path:
    img = rect_image(width, height, list(rects))
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def noisy_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A JPEG of a few tens of KB (noise keeps it from compressing to nothing)."""
    img = rect_image(width, height, [(30, 40, 200, 90)]).astype(np.int16)
    img += np.random.default_rng(0).integers(-40, 40, img.shape, dtype=np.int16)
    return cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def streamed_png(path: Path, width: int, height: int, row, channels: int = 3) -> Path:
    """A valid 8-bit PNG (grey or RGB) of any size written row by row through zlib, so that a huge,
    uniform image costs a few MB of memory and well under a second. ``row(y)`` -> pixel bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = {1: 0, 3: 2}[channels]
    packer = zlib.compressobj(1)
    parts = []
    for y in range(height):
        parts.append(packer.compress(b"\0" + row(y)))
    parts.append(packer.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    return path


def gray_png(path: Path, width: int, height: int, value: int = 255) -> Path:
    line = bytes([value]) * width
    return streamed_png(path, width, height, lambda y: line, channels=1)


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


# --- 4. one-line errors naming the file -----------------------------------------------------------
def test_nan_ground_truth_is_one_error_naming_file_and_line(tmp_path):
    root = tmp_path / "icdar"
    (root / "test_images").mkdir(parents=True)
    (root / "test_gts").mkdir()
    write_rgb(root / "test_images" / "img_1.png")
    gt = root / "test_gts" / "gt_img_1.txt"
    gt.write_text("1,1,50,1,50,20,1,20,ok\nnan,1,50,1,50,20,1,20,word\n")
    with pytest.raises(DBNetError, match=r"gt_img_1\.txt:2: non-finite coordinate"):
        load_samples("icdar15", root, "test")
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps({"images": [{"file": "img_1.png", "detections": []}]}))
    result = invoke("eval", "--dataset", "icdar15", "--data-root", root, "--pred", pred)
    assert result.exit_code == 1 and "gt_img_1.txt:2" in result.output and "Traceback" not in result.output
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "test.jsonl").write_text(json.dumps({"image": "a.png", "polygons": [
        [[0, 0], [float("nan"), 0], [5, 5]]]}) + "\n")
    with pytest.raises(DBNetError, match=r"test\.jsonl:1: .*non-finite"):
        load_samples("custom", custom, "test")


@pytest.mark.parametrize("detection, complaint", [
    ({"points": [[0, 0], [9, 0], [9, 9]], "score": float("nan")}, "score"),
    ({"points": [[0, 0], [9, 0], [9, 9]], "score": True}, "score"),
    ({"points": [["0", "0"], ["9", "0"], ["9", "9"]], "score": 0.9}, "points"),
    ({"points": [[0, 0], [9, True], [9, 9]], "score": 0.9}, "points"),
])
def test_eval_pred_rejects_nan_boolean_and_string_values(tmp_path, detection, complaint):
    root = tmp_path / "data"
    root.mkdir()
    write_rgb(root / "img0.png")
    (root / "test.jsonl").write_text(json.dumps({"image": "img0.png", "polygons": []}) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"images": [{"file": "img0.png", "detections": [detection]}]}))
    with pytest.raises(DBNetError, match=rf"pred\.json: images\[0\]\.detections\[0\] \(img0\.png\): "
                                         rf"\"{complaint}\""):
        evaluate_predictions(load_samples("custom", root, "test"), pred)
    result = invoke("eval", "--dataset", "custom", "--data-root", root, "--pred", pred)
    assert result.exit_code == 1 and "pred.json" in result.output and "Traceback" not in result.output


def _bad_weights(source: Path, tmp_path: Path, name: str, change) -> Path:
    from dbcli.weights import load_weights

    data = dict(load_weights(source))
    data.pop("path")
    data["model"] = dict(data["model"])
    data["postprocess"] = dict(data.get("postprocess") or {})
    change(data)
    path = tmp_path / name
    torch.save(data, path)
    return path


@pytest.mark.parametrize("name, change, message", [
    ("arch.pt", lambda d: d["model"].update(arch="vgg99"), "unknown architecture 'vgg99'"),
    ("newer.pt", lambda d: d["model"].update(width=2), "unknown model setting(s) width"),
    ("thresh.pt", lambda d: d["postprocess"].update(thresh="high"), "postprocess thresh must be a number"),
    ("version.pt", lambda d: d.update(version=7), "format version 7"),
])
def test_bad_weights_files_are_one_error_naming_the_file(model_files, tmp_path, name, change, message):
    from dbcli.weights import load_weights

    path = _bad_weights(model_files["pt"], tmp_path, name, change)
    with pytest.raises(DBNetError) as info:
        load_weights(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    image = write_rgb(tmp_path / "a.png")
    result = invoke("detect", image, "--weights", path)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and name in result.stderr
    assert "Traceback" not in result.output


def test_known_architectures_come_from_the_models_package():
    from dbcli.models import ARCHS
    from dbcli.weights import weights_problem

    entry = {"format": "dbnet-weights", "version": 1, "state_dict": {}}
    assert "mobilenet_v3" in ARCHS
    for arch in ARCHS:
        assert weights_problem({**entry, "model": {"arch": arch}}) is None, arch
    assert "unknown architecture 'newnet'" in weights_problem({**entry, "model": {"arch": "newnet"}})


def test_export_checks_out_before_exporting(model_files, tmp_path, monkeypatch):
    import dbcli.interop.export as export_module

    def too_early(*args, **kwargs):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(export_module, "_export_onnx", too_early)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = invoke("export", "--weights", model_files["pt"], "--out", blocker / "model.onnx")
    assert result.exit_code == 1 and "cannot write" in result.output and "model.onnx" in result.output


# --- 5. interrupts and --resume -------------------------------------------------------------------
def _images(folder: Path, count: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_rgb(folder / f"img{i}.png", 120 + 8 * i, 100, [(10, 20, 90, 45)]) for i in range(count)]


def _interrupting(model: Model, after: int) -> Model:
    import dataclasses

    calls = {"n": 0}

    def prob_fn(batch):
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt
        return model.prob_fn(batch)

    return dataclasses.replace(model, prob_fn=prob_fn)


def test_jsonl_keeps_the_images_done_on_interrupt_and_resume_finishes(model_files, tmp_path):
    paths = _images(tmp_path / "in")
    model = load_model(model_files["onnx"], "onnx", "cpu")
    settings = resolve_settings(model, InferenceOptions(short_side=96))
    straight = tmp_path / "straight.jsonl"
    detect([tmp_path / "in"], straight, "jsonl", model, settings, progress=False)
    want = {json.loads(line)["file"]: line for line in straight.read_text().splitlines()}
    assert len(want) == 5

    out = tmp_path / "all.jsonl"
    with pytest.raises(DetectInterrupted, match=r"all\.jsonl\.partial.*--resume"):
        detect([tmp_path / "in"], out, "jsonl", _interrupting(model, 3), settings, progress=False)
    partial = partial_path(out)
    assert not out.exists() and partial.exists()
    done = partial.read_text().splitlines()
    assert len(done) == 3 and all(line in want.values() for line in done)
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "all.jsonl.lock").exists()

    # a fresh run would overwrite the work done: refused, naming --resume
    with pytest.raises(DBNetError, match="--resume"):
        detect([tmp_path / "in"], out, "jsonl", model, settings, progress=False)
    # a process killed in the middle of a line: that line is dropped and its image done again
    with open(partial, "a") as f:
        f.write('{"file": "' + str(paths[3])[:10])
    summary = detect([tmp_path / "in"], out, "jsonl", model, settings, progress=False, resume=True)
    assert summary.resumed == 3 and summary.images == 2
    lines = out.read_text().splitlines()
    assert sorted(lines) == sorted(want.values()) and not partial.exists()

    # resuming a finished file adds only new images
    _images(tmp_path / "in", 6)
    summary = detect([tmp_path / "in"], out, "jsonl", model, settings, progress=False, resume=True)
    assert summary.resumed == 5 and summary.images == 1 and len(out.read_text().splitlines()) == 6


def test_resume_cli(model_files, tmp_path):
    _images(tmp_path / "in", 2)
    out = tmp_path / "o.jsonl"
    args = ["detect", tmp_path / "in", "--weights", model_files["onnx"], "--out", out]
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--resume")
    assert result.exit_code == 0 and "0 images" in result.stderr and "2 done before" in result.stderr
    result = invoke("detect", tmp_path / "in", "--weights", model_files["onnx"], "--out", tmp_path / "o.json",
                    "--resume")
    assert result.exit_code == 1 and "--resume" in result.stderr and "jsonl" in result.stderr


def test_sigterm_ends_detect_like_ctrl_c():
    import time

    from dbcli.commands.common import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
    assert signal.getsignal(signal.SIGTERM) == before


# --- 6. empty INPUT -------------------------------------------------------------------------------
def test_empty_input_is_refused(model_files, tmp_path, monkeypatch):
    write_rgb(tmp_path / "here.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DBNetError, match="empty INPUT"):
        expand_inputs([""])
    result = invoke("detect", "", "--weights", model_files["onnx"], "--out", tmp_path / "o.json")
    assert result.exit_code == 1 and "empty INPUT" in result.stderr
    assert not (tmp_path / "o.json").exists()


# --- 7. concurrent writers ------------------------------------------------------------------------
def test_a_second_writer_of_the_same_out_is_refused(model_files, tmp_path):
    image = write_rgb(tmp_path / "a.png")
    out = tmp_path / "o.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "o.json.lock").write_text(f"{other.pid}\n")  # as a running dbnet leaves it
        result = invoke("detect", image, "--weights", model_files["onnx"], "--out", out)
        assert result.exit_code == 1 and f"pid {other.pid}" in result.stderr and "o.json" in result.stderr
        assert not out.exists()
    finally:
        other.kill()
        other.wait()
    # the holder is gone (killed): its stale lock is taken over, and removed at the end
    result = invoke("detect", image, "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists() and not (tmp_path / "o.json.lock").exists()


# --- 8. torchrun: a failing rank ends the job -----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, inputs: list[str], out: str, queue) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))

    def prob_fn(batch):
        if rank == 1:
            raise RuntimeError("simulated crash on rank 1")
        return np.zeros((batch.shape[0], *batch.shape[2:]), np.float32)

    try:
        detect(inputs, out, "json", Model(prob_fn, {"backend": "fake"}), Settings(short_side=64), progress=False)
        queue.put((rank, "ok"))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put((rank, f"{exc.__class__.__name__}: {exc}"))


def test_a_crashed_rank_ends_every_rank(tmp_path):
    import multiprocessing

    _images(tmp_path / "in", 4)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, [str(tmp_path / "in")], str(tmp_path / "o.json"),
                                                  queue)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not hung, f"rank(s) {hung} still waiting for the crashed rank"
    reports = dict(queue.get(timeout=5) for _ in procs)
    for rank in (0, 1):
        assert reports[rank].startswith("DBNetError") and "rank 1" in reports[rank], reports
        assert "simulated crash on rank 1" in reports[rank]
    assert not (tmp_path / "o.json").exists()


def test_large_images_are_copied_out_of_pillow_in_strips():
    from dbcli.imaging import pillow_to_numpy

    rgb = np.random.default_rng(0).integers(0, 256, (301, 257, 3), dtype=np.uint8)
    for mode, array in (("RGB", rgb), ("L", rgb[:, :, 0]), ("RGBA", np.dstack([rgb, rgb[:, :, :1]]))):
        img = Image.fromarray(np.ascontiguousarray(array), mode)
        assert np.array_equal(pillow_to_numpy(img, large=0, strip_pixels=5000), array), mode


# --- train: --resume, checkpoints, workers, the candidate cap --------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from test_train import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tiny"), count=4)


def _train_config(data: Path, out: Path, **overrides):
    from dbcli.training.config import TrainConfig

    base = dict(dataset="custom", data_root=str(data), out=str(out), epochs=1, batch_size=2, crop_size=64,
                workers=0, device="cpu", val_fraction=0.25, val_every=1, val_short_side=64, log_every=1)
    return TrainConfig(**{**base, **overrides})


def test_resume_of_a_bad_file_is_one_error_naming_it(tmp_path):
    from fractions import Fraction

    from dbcli.training.config import TrainConfig
    from dbcli.training.loop import train

    files = {"corrupt.pt": None, "notes.pt": None, "dict.pt": {"a": 1}, "code.pt": None}
    (tmp_path / "corrupt.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save({"a": 1}, tmp_path / "dict.pt")
    torch.save({"config": {}, "model_state": {}, "optimizer": {}, "scaler": {}, "epoch": 0, "step": 0,
                "rng": {"anything": Fraction(1, 3)}}, tmp_path / "code.pt")  # a pickled object
    for name in files:
        path = tmp_path / name
        with pytest.raises(DBNetError) as info:
            train(TrainConfig(resume=str(path), workers=0, device="cpu"))
        assert str(info.value).startswith(f"{path}: "), info.value
        result = invoke("train", "--resume", path, "--device", "cpu")
        assert result.exit_code == 1 and result.output.count("\n") == 1 and name in result.output
        assert "Traceback" not in result.output
    with pytest.raises(DBNetError, match="objects other than tensors"):
        train(TrainConfig(resume=str(tmp_path / "code.pt"), workers=0, device="cpu"))
    with pytest.raises(DBNetError, match="not a dbnet training checkpoint"):
        train(TrainConfig(resume=str(tmp_path / "dict.pt"), workers=0, device="cpu"))


def test_checkpoints_load_weights_only_and_resume_keeps_workers_and_cleans_temps(tiny_data, tmp_path):
    from dbcli.training.loop import load_checkpoint, train

    run = tmp_path / "run"
    train(_train_config(tiny_data, run, max_steps=1, epochs=2))
    state = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)  # no pickled objects
    assert state["step"] == 1 and json.loads((run / "config.json").read_text())["workers"] == 0
    stale = run / ".latest.pt.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    result = invoke("train", "--resume", run, "--max-steps", "1", "--device", "cpu")  # no --workers
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["workers"] == 0  # was turned back into 4
    assert not stale.exists() and "interrupted checkpoint write" in (run / "train.log").read_text()
    assert torch.load(run / "latest.pt", weights_only=True)["step"] == 2
    # a checkpoint written before the RNG state was stored as plain lists still loads
    old = dict(state)
    old["rng"] = {**state["rng"], "numpy": np.random.get_state()}
    torch.save(old, tmp_path / "old.pt")
    assert isinstance(load_checkpoint(tmp_path / "old.pt")[1]["rng"]["numpy"][1], np.ndarray)


def test_default_workers_fit_the_machine():
    from dbcli.cpu import available_cpus, default_workers
    from dbcli.training.config import TrainConfig

    assert TrainConfig().workers is None  # resolved per run: a resumed run keeps its own
    assert 1 <= default_workers() <= min(4, available_cpus())


def test_validation_reports_the_candidate_cap_in_its_result_not_as_a_warning(tiny_data, monkeypatch):
    import warnings

    import dbcli.inference.pipeline as engine
    from dbcli.models import DBNet
    from dbcli.postprocess.boxes import PostConfig
    from dbcli.training.loop import validate

    def capped(prob, width, height, config):
        return [], 5000  # 5000 candidate regions, more than max_candidates (1000)

    monkeypatch.setattr(engine, "detections_and_candidates", capped)
    samples = load_samples("custom", tiny_data, "train")[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = validate(DBNet(), samples, None, torch.device("cpu"), 64, PostConfig(), None)
    assert result["capped_images"] == 2
