"""`dbnet detect` (issue 4): inputs, output formats, bad files, EXIF, image formats, the torch-free
ONNX path and torch/ONNX agreement.

The detector is the real DBNet code with hand-set ("planted") weights whose probability map marks
dark regions (tests/planted_model.py), so every test knows where the text boxes must be.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import TORCH_BLOCKER, runner
from PIL import Image
from planted_model import match_rects, planted_files, rect_image

from dbcli.backends.loading import load_model
from dbcli.cli import app
from dbcli.engine.options import InferenceOptions
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.settings import resolve_settings
from dbcli.outputs.writers import output_path
from dbcli.workflows.detect import detect_files as detect
from dbcli.workflows.inputs import expand_inputs

REPO = Path(__file__).resolve().parents[2]

# Three test images: (relative path, width, height, dark rectangles)
IMAGES = [
    ("a.png", 260, 180, [(30, 40, 140, 70), (60, 115, 210, 140)]),
    ("b.jpg", 200, 240, [(40, 50, 160, 80), (50, 150, 120, 200)]),
    ("sub/deeper/c.bmp", 220, 160, [(70, 60, 170, 100)]),
]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for rel, w, h, rects in IMAGES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = rect_image(w, h, rects)
        assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (root / "notes.txt").write_text("not an image")  # not an image extension: ignored in folders
    return root


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def by_name(images: list[dict]) -> dict[str, dict]:
    return {Path(e["file"]).name: e for e in images}


def expected() -> dict[str, tuple]:
    return {Path(rel).name: (w, h, rects) for rel, w, h, rects in IMAGES}


# --- inputs ---------------------------------------------------------------------------------------
def test_expand_inputs_dirs_globs_files(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for rel in ("d/1.png", "d/e/2.JPG", "d/e/3.webp", "d/readme.md", "x.tif", "y.txt"):
        (tmp_path / rel).write_bytes(b"")
    paths, problems = expand_inputs([tmp_path / "d", str(tmp_path / "*.tif"), tmp_path / "y.txt",
                                     tmp_path / "d" / "1.png", tmp_path / "missing.png", str(tmp_path / "*.gif")])
    names = [p.relative_to(tmp_path).as_posix() for p in paths]
    # folder: recursive, image extensions only (any case); explicit files kept whatever their
    # extension; duplicates (d/1.png twice) dropped; order kept
    assert names == ["d/1.png", "d/e/2.JPG", "d/e/3.webp", "x.tif", "y.txt"]
    assert len(problems) == 2
    assert "missing.png" in problems[0] and "*.gif" in problems[1]
    paths, _ = expand_inputs([str(tmp_path / "**" / "*.png")])
    assert [p.name for p in paths] == ["1.png"]


# --- JSON, settings, defaults ---------------------------------------------------------------------
def test_detect_json_schema_and_boxes(model_files, image_dir, tmp_path):
    out = tmp_path / "polygons.json"
    result = invoke("detect", image_dir, "--weights", model_files["pt"], "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) == {"model", "settings", "images"}
    # the default backend (auto) on a CPU with onnxruntime: the .pt file's cached ONNX export
    assert data["model"]["backend"] == "onnx" and data["model"]["arch"] == "resnet18"
    # thresholds come from the weights file when not given on the command line
    assert data["settings"]["box_thresh"] == 0.5 and data["settings"]["short_side"] == 256
    assert data["settings"]["exif"] is True
    images = data["images"]
    assert len(images) == 3  # notes.txt is not picked up from the folder
    want = expected()
    assert data["settings"]["scale_policy"] == "auto"  # no --short-side: the scale policy
    for entry in images:
        assert set(entry) == {"file", "width", "height", "scale", "detections"}
        assert entry["scale"]["policy"] == "auto" and entry["scale"]["tiles"] == 1
        w, h, rects = want[Path(entry["file"]).name]
        assert (entry["width"], entry["height"]) == (w, h)
        for det in entry["detections"]:
            assert set(det) == {"points", "score"}
            assert len(det["points"]) == 4 and all(len(p) == 2 for p in det["points"])
            assert 0.5 <= det["score"] <= 1.0
            xs, ys = zip(*det["points"])
            assert 0 <= min(xs) and max(xs) <= w and 0 <= min(ys) and max(ys) <= h
        assert match_rects(entry["detections"], rects), (entry["file"], entry["detections"])


def test_options_override_weights_defaults(model_files, image_dir, tmp_path):
    out = tmp_path / "strict.json"
    result = invoke("detect", image_dir / "a.png", "--weights", model_files["pt"], "--out", out,
                    "--box-thresh", "0.999", "--thresh", "0.4", "--short-side", "160", "--unclip-ratio", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    s = data["settings"]
    assert (s["box_thresh"], s["thresh"], s["short_side"], s["unclip_ratio"]) == (0.999, 0.4, 160, 2.0)
    assert data["images"][0]["detections"] == []  # no region's mean probability reaches 0.999


def test_settings_resolution_order():
    from dbcli.backends.base import Model

    model = Model(lambda b: b[:, 0], {}, {"thresh": 0.25, "box_thresh": 0.7, "unknown": 1}, 1024)
    s = resolve_settings(model)
    assert (s.post.thresh, s.post.box_thresh, s.post.unclip_ratio, s.short_side) == (0.25, 0.7, 1.5, 1024)
    s = resolve_settings(model, InferenceOptions(short_side=640, box_thresh=0.5, polygon=True))
    assert (s.post.thresh, s.post.box_thresh, s.post.polygon, s.short_side) == (0.25, 0.5, True, 640)
    assert resolve_settings(Model(lambda b: b, {}, {}, None)).short_side == 736
    # batch size: 1 on a CPU, 8 on CUDA, unless given
    assert resolve_settings(Model(lambda b: b, {"device": "cpu"}, {}, None)).batch_size == 1
    assert resolve_settings(Model(lambda b: b, {"device": "cuda:0"}, {}, None)).batch_size == 8
    cuda = Model(lambda b: b, {"device": "cuda"}, {}, None)
    assert resolve_settings(cuda, InferenceOptions(batch_size=3)).batch_size == 3
    from dbcli.errors import DBNetError

    for bad in ({"thresh": 1.5}, {"batch_size": 0}, {"short_side": 8}, {"unclip_ratio": 0.0}):
        with pytest.raises(DBNetError):
            resolve_settings(model, InferenceOptions(**bad))


# --- other formats --------------------------------------------------------------------------------
def test_icdar_and_jsonl_match_json(model_files, image_dir, tmp_path, monkeypatch):
    common = ["--weights", model_files["onnx"], "--device", "cpu", "--short-side", "192"]
    assert invoke("detect", image_dir, "--out", tmp_path / "p.json", *common).exit_code == 0
    reference = json.loads((tmp_path / "p.json").read_text())["images"]
    assert sum(len(e["detections"]) for e in reference) == sum(len(r) for _, _, _, r in IMAGES)

    result = invoke("detect", image_dir, "--out", tmp_path / "p.jsonl", *common)  # format from suffix
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == reference
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    result = invoke("detect", image_dir, "--format", "icdar", "--out", tmp_path / "icdar", *common)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "icdar").iterdir())
    assert files == ["res_a.txt", "res_b.txt", "res_c.txt"]
    for entry in reference:
        text = (tmp_path / "icdar" / f"res_{Path(entry['file']).stem}.txt").read_text()
        rows = [line.split(",") for line in text.splitlines()]
        assert len(rows) == len(entry["detections"])
        for row, det in zip(rows, entry["detections"]):
            assert len(row) == 2 * len(det["points"]) + 1
            coords = np.array([int(v) for v in row[:-1]]).reshape(-1, 2)
            assert np.abs(coords - np.array(det["points"])).max() <= 0.51
            assert abs(float(row[-1]) - det["score"]) < 1e-3

    result = invoke("detect", image_dir, "--format", "icdar", *common)
    assert result.exit_code == 1 and "--out" in result.output
    # two inputs that would write the same res_a.txt: refused, not silently overwritten
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "a.png").write_bytes((image_dir / "a.png").read_bytes())
    result = invoke("detect", image_dir / "a.png", twin / "a.png", "--format", "icdar",
                    "--out", tmp_path / "icdar2", *common)
    assert result.exit_code == 1 and "res_a.txt" in result.stderr

    # an output that cannot be written is one error line, not a traceback
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("detect", image_dir / "a.png", "--out", blocker / "sub" / "p.json", *common)
    assert result.exit_code == 1 and "cannot write" in result.stderr and "Traceback" not in result.output
    # ... found before any image is processed, in every format (a long job must not fail at its end)
    import dbcli.workflows.detect as detect_module

    def no_images(*args, **kwargs):
        raise AssertionError("images were processed before the output was checked")

    monkeypatch.setattr(detect_module, "run_pipeline", no_images)
    for fmt in ("json", "jsonl", "icdar"):
        result = invoke("detect", image_dir / "a.png", "--format", fmt, "--out", blocker / "sub" / f"p.{fmt}",
                        *common)
        assert result.exit_code == 1 and "cannot write" in result.stderr, (fmt, result.output)


def test_out_folder_gets_polygons_file_inside(model_files, image_dir, tmp_path):
    """``--out results/`` (or an existing folder) with json / jsonl writes ``polygons.json`` /
    ``polygons.jsonl`` inside the folder and says so, never a file named ``results``."""
    common = ["--weights", model_files["onnx"], "--device", "cpu", "--short-side", "192"]
    result = invoke("detect", image_dir / "a.png", "--out", f"{tmp_path / 'results'}/", *common)
    assert result.exit_code == 0, result.output
    written = tmp_path / "results" / "polygons.json"
    assert (tmp_path / "results").is_dir() and json.loads(written.read_text())["images"][0]["file"].endswith("a.png")
    assert f"wrote {written}:" in result.stderr
    # an existing folder, no trailing slash, jsonl: polygons.jsonl inside it; --resume finds it again
    (tmp_path / "lines").mkdir()
    for extra in ([], ["--resume"]):
        result = invoke("detect", image_dir / "a.png", image_dir / "b.jpg", "--format", "jsonl",
                        "--out", tmp_path / "lines", *extra, *common)
        assert result.exit_code == 0, result.output
        assert f"wrote {tmp_path / 'lines' / 'polygons.jsonl'}:" in result.stderr
    assert len((tmp_path / "lines" / "polygons.jsonl").read_text().splitlines()) == 2
    assert "2 done before" in result.stderr
    # icdar: the folder itself, as before
    assert output_path(f"{tmp_path / 'icdar'}/", "icdar") == tmp_path / "icdar"
    assert output_path(tmp_path / "p.json", "json") == tmp_path / "p.json"


def test_summary_table_without_out(model_files, image_dir, monkeypatch):
    monkeypatch.chdir(image_dir)  # names as a user types them (a long absolute path is folded in the table)
    result = invoke("detect", "a.png", "b.jpg", "--weights", model_files["onnx"])
    assert result.exit_code == 0, result.output
    assert "a.png" in result.stdout and "b.jpg" in result.stdout
    assert "2 images, 4 text regions" in result.stdout


# --- bad inputs -----------------------------------------------------------------------------------
def test_bad_files_are_skipped_with_warnings(model_files, image_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (bad / "empty.png").write_bytes(b"")
    good = cv2.imencode(".png", rect_image(120, 100, [(20, 30, 100, 60)]))[1].tobytes()
    (bad / "truncated.png").write_bytes(good[:40])
    (bad / "notes.txt").write_text("hello")
    out = tmp_path / "out.json"
    result = invoke("detect", image_dir / "a.png", bad, bad / "notes.txt", tmp_path / "missing.jpg",
                    "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 0, result.output
    for name in ("corrupt.jpg", "empty.png", "truncated.png", "notes.txt", "missing.jpg"):
        assert any(name in line and "warning" in line for line in result.stderr.splitlines()), name
    assert any("empty.png: empty file" in line for line in result.stderr.splitlines())
    assert "Traceback" not in result.output
    data = json.loads(out.read_text())
    assert [Path(e["file"]).name for e in data["images"]] == ["a.png"]

    # nothing readable: exit status 1, one error line, no output written
    for fmt, target in (("json", tmp_path / "none.json"), ("jsonl", tmp_path / "none.jsonl")):
        result = invoke("detect", bad, bad / "notes.txt", "--weights", model_files["onnx"], "--out", target,
                        "--format", fmt)
        assert result.exit_code == 1
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "no image could be processed" in errors[0]
        assert "Traceback" not in result.output
        assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    result = invoke("detect", tmp_path / "nothing-here", "--weights", model_files["onnx"])
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_missing_weights_is_one_error_line(image_dir, tmp_path):
    result = invoke("detect", image_dir, "--weights", tmp_path / "nope.pt")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    result = invoke("detect", image_dir, "--weights", tmp_path / "nope.onnx")
    assert result.exit_code == 1 and "error:" in result.stderr


# --- EXIF and image formats -----------------------------------------------------------------------
def _save_with_orientation(path: Path, upright: np.ndarray, orientation: int) -> None:
    """Store pixels so that a viewer applying EXIF ``orientation`` shows ``upright``."""
    # 6: the viewer turns the stored image 90 degrees clockwise; 8: counter-clockwise.
    stored = np.rot90(upright, 1 if orientation == 6 else -1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, "JPEG", quality=95, exif=exif.tobytes())


def _rotate_rect(rect, width, height, orientation):
    """Upright-frame rectangle -> stored-frame rectangle (np.rot90 as in _save_with_orientation)."""
    x0, y0, x1, y1 = rect
    if orientation == 6:  # rot90 k=1 (counter-clockwise): (x, y) -> (y, W - x)
        return (y0, width - x1, y1, width - x0)
    return (height - y1, x0, height - y0, x1)  # k=-1 (clockwise): (x, y) -> (H - y, x)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_input_gives_upright_boxes(model_files, tmp_path, orientation):
    width, height = 180, 260  # upright: portrait
    rects = [(30, 40, 150, 75), (40, 170, 110, 230)]
    path = tmp_path / f"rotated{orientation}.jpg"
    _save_with_orientation(path, rect_image(width, height, rects), orientation)
    with Image.open(path) as im:
        assert im.size == (height, width)  # stored landscape

    out = tmp_path / "exif.json"
    assert invoke("detect", path, "--weights", model_files["onnx"], "--out", out).exit_code == 0
    entry = json.loads(out.read_text())["images"][0]
    assert (entry["width"], entry["height"]) == (width, height)
    assert match_rects(entry["detections"], rects), entry["detections"]

    out = tmp_path / "noexif.json"
    assert invoke("detect", path, "--weights", model_files["onnx"], "--out", out, "--no-exif").exit_code == 0
    data = json.loads(out.read_text())
    entry = data["images"][0]
    assert data["settings"]["exif"] is False
    assert (entry["width"], entry["height"]) == (height, width)
    stored = [_rotate_rect(r, width, height, orientation) for r in rects]
    assert match_rects(entry["detections"], stored), entry["detections"]


def test_image_formats_decode(model_files, tmp_path):
    w, h = 200, 150
    rects = [(30, 40, 160, 75)]
    rgb = rect_image(w, h, rects)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    files = {}
    files["png16.png"] = (gray.astype(np.uint16) * 257)  # 16-bit grayscale
    files["rgb16.png"] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257  # 16-bit colour
    files["gray.png"] = gray
    files["image.bmp"] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    files["image.tiff"] = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for name, array in files.items():
        assert cv2.imwrite(str(tmp_path / name), array)
    Image.fromarray(rgb).save(tmp_path / "image.webp", lossless=True)
    # RGBA: an extra dark block that is fully transparent must vanish (composited over white)
    rgba = np.dstack([rect_image(w, h, rects + [(40, 100, 150, 130)]), np.full((h, w), 255, np.uint8)])
    rgba[100:130, 40:150, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    names = sorted(list(files) + ["image.webp", "rgba.png"])

    model = load_model(model_files["onnx"], "onnx", "cpu")
    settings = resolve_settings(model, InferenceOptions(batch_size=3))
    items = list(run_pipeline(sorted(tmp_path.iterdir()), model, settings))
    assert [Path(i.file).name for i in items] == names
    for item in items:
        assert not hasattr(item, "message"), item.message
        assert (item.width, item.height) == (w, h), item.file
        assert match_rects([d.to_dict() for d in item.detections], rects), (item.file, item.detections)


# --- backends -------------------------------------------------------------------------------------
def _parity_images(tmp_path: Path) -> list[Path]:
    """Varied layouts including rotated bars (non-axis-aligned boxes) and sizes that batch together."""
    paths = []
    for i, (w, h) in enumerate([(240, 180), (240, 180), (200, 260), (320, 128), (240, 180)]):
        img = rect_image(w, h, [(20 + 7 * i, 30, 120 + 5 * i, 55 + 3 * i)])
        box = cv2.boxPoints(((w * 0.6, h * 0.65), (90 - 6 * i, 22), 25 + 10 * i)).astype(np.int32)
        cv2.fillPoly(img, [box], (15, 15, 15))
        cv2.circle(img, (w // 4, int(h * 0.75)), 14 + i, (30, 30, 30), -1)
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def _cached(model):
    """The same model with its network outputs memoised (the two post-processing modes below
    share one forward pass per batch)."""
    import dataclasses
    import hashlib

    memo = {}

    def prob_fn(batch):
        key = hashlib.sha1(batch.tobytes()).hexdigest() + str(batch.shape)
        if key not in memo:
            memo[key] = model.prob_fn(batch)
        return memo[key]

    return dataclasses.replace(model, prob_fn=prob_fn)


def test_torch_and_onnx_backends_agree(model_files, tmp_path):
    paths = _parity_images(tmp_path)
    torch_model = _cached(load_model(model_files["pt"], "torch", "cpu"))
    onnx_model = _cached(load_model(model_files["onnx"], None, "cpu"))  # backend chosen by the suffix
    assert onnx_model.info["backend"] == "onnx" and torch_model.info["backend"] == "torch"
    for polygon in (False, True):
        # The ONNX file carries the weights' defaults in its metadata: same settings without the .pt
        s_torch = resolve_settings(torch_model, InferenceOptions(polygon=polygon, batch_size=2))
        s_onnx = resolve_settings(onnx_model, InferenceOptions(polygon=polygon, batch_size=3))
        assert s_torch.post == s_onnx.post and s_torch.short_side == s_onnx.short_side
        a = list(run_pipeline(paths, torch_model, s_torch))
        b = list(run_pipeline(paths, onnx_model, s_onnx))
        total = 0
        for x, y in zip(a, b, strict=True):
            assert len(x.detections) == len(y.detections) >= 3, (x.file, len(x.detections), len(y.detections))
            for dx, dy in zip(x.detections, y.detections):
                assert dx.points.shape == dy.points.shape
                if not polygon:
                    assert dx.points.shape == (4, 2)
                assert np.abs(dx.points - dy.points).max() < 0.05
                assert abs(dx.score - dy.score) < 1e-4
            total += len(x.detections)
        assert total >= 15


def _assert_close_detections(a, b, max_dp: float, max_dscore: float) -> int:
    total = 0
    for x, y in zip(a, b, strict=True):
        assert len(x.detections) == len(y.detections) >= 3, (x.file, len(x.detections), len(y.detections))
        for dx, dy in zip(x.detections, y.detections):
            assert dx.points.shape == dy.points.shape
            assert np.abs(dx.points - dy.points).max() < max_dp
            assert abs(dx.score - dy.score) < max_dscore
        total += len(x.detections)
    return total


def test_bf16_precision_is_close_to_fp32(model_files, tmp_path):
    """--precision bf16 (autocast on the CPU): the same regions, corners within 1 px and scores within
    0.01 of fp32 (bf16 keeps 8 bits of mantissa: the maps move by ~1e-3, not the boxes)."""
    paths = _parity_images(tmp_path)
    fp32 = load_model(model_files["pt"], "torch", "cpu")
    bf16 = load_model(model_files["pt"], "torch", "cpu", precision="bf16")
    assert (fp32.info["dtype"], bf16.info["dtype"]) == ("fp32", "bf16")
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    p32, p16 = fp32.prob_fn(batch), bf16.prob_fn(batch)
    assert p16.dtype == np.float32 and p16.shape == p32.shape
    assert 0 < np.abs(p16 - p32).max() < 0.02  # it does run in bf16, and stays close
    settings = resolve_settings(fp32, InferenceOptions(batch_size=2))
    total = _assert_close_detections(list(run_pipeline(paths, fp32, settings)),
                                     list(run_pipeline(paths, bf16, settings)), 1.0, 0.01)
    assert total >= 15


def test_precision_is_recorded_and_bad_requests_fail_cleanly(model_files, image_dir, tmp_path, monkeypatch):
    out = tmp_path / "bf16.json"
    result = invoke("detect", image_dir / "a.png", "--weights", model_files["pt"], "--device", "cpu",
                    "--precision", "BF16", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model"]["dtype"] == "bf16"
    _, _, rects = expected()["a.png"]
    assert match_rects(data["images"][0]["detections"], rects)
    for args, words in [(["--precision", "fp16", "--device", "cpu"], "CUDA"),
                        (["--precision", "int8"], "unknown --precision"),
                        (["--precision", "bf16", "--weights", model_files["onnx"]], "torch backend")]:
        weights = [] if "--weights" in args else ["--weights", model_files["pt"]]
        result = invoke("detect", image_dir / "a.png", *weights, *args)
        assert result.exit_code == 1 and words in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1  # one line, no traceback
    # a CPU without native bfloat16 still runs bf16, and says that it is slower there
    import dbcli.device

    monkeypatch.setattr(dbcli.device, "cpu_supports_bf16", lambda: False)
    result = invoke("detect", image_dir / "a.png", "--weights", model_files["pt"], "--device", "cpu",
                    "--precision", "bf16", "--out", tmp_path / "emulated.json")
    assert result.exit_code == 0 and "emulated" in result.stderr, result.stderr


def test_fp16_on_cuda_is_close_to_fp32(model_files, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    paths = _parity_images(tmp_path)
    fp32 = load_model(model_files["pt"], "torch", "cuda")
    settings = resolve_settings(fp32, InferenceOptions(batch_size=4))
    reference = list(run_pipeline(paths, fp32, settings))
    for precision in ("fp16", "bf16"):
        half = load_model(model_files["pt"], "torch", "cuda", precision=precision)
        assert half.info["dtype"] == precision
        assert _assert_close_detections(reference, list(run_pipeline(paths, half, settings)), 1.0, 0.01) >= 15


def test_batching_does_not_change_results(model_files, tmp_path):
    paths = _parity_images(tmp_path)
    model = load_model(model_files["onnx"], "onnx", "cpu")
    one = [r.to_dict() for r in run_pipeline(paths, model, resolve_settings(model, InferenceOptions(batch_size=1)))]
    four = [r.to_dict() for r in run_pipeline(paths, model, resolve_settings(model, InferenceOptions(batch_size=4)))]
    assert one == four


def test_onnx_backend_never_imports_torch(model_files, image_dir, tmp_path):
    out = tmp_path / "onnx.json"
    script = tmp_path / "no_torch.py"
    script.write_text(TORCH_BLOCKER)
    proc = subprocess.run([sys.executable, str(script), "detect", str(image_dir), "--backend", "onnx",
                           "--weights", str(model_files["onnx"]), "--out", str(out), "--batch-size", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TORCH_MODULES=\n" in proc.stderr or proc.stderr.rstrip().endswith("TORCH_MODULES=")
    data = json.loads(out.read_text())
    assert data["model"]["backend"] == "onnx"
    for entry in data["images"]:
        _, _, rects = expected()[Path(entry["file"]).name]
        assert match_rects(entry["detections"], rects)

    # the blocker does work: the torch backend fails under it
    proc = subprocess.run([sys.executable, str(script), "detect", str(image_dir), "--backend", "torch",
                           "--weights", str(model_files["pt"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0


# --- multi-process sharding -----------------------------------------------------------------------
def test_ranks_split_inputs_and_rank0_merges(model_files, image_dir, tmp_path, monkeypatch):
    """torchrun logic without processes: rank r takes images r, r+2, ...; rank 0 writes all, in
    input order. ``distributed.gather`` is replaced by a fake holding the other rank's share."""
    import dbcli.workflows.distributed as distributed

    model = load_model(model_files["onnx"], "onnx", "cpu")
    settings = resolve_settings(model)
    shares = {}

    def fake_gather(local, size, error=None):
        shares[rank] = local
        return [item for r in sorted(shares) for item in shares[r]]

    monkeypatch.setattr(distributed, "gather", fake_gather)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # torchrun sets these beside RANK and WORLD_SIZE
    monkeypatch.setenv("MASTER_PORT", "29500")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        out = tmp_path / f"rank{rank}.json"
        detect([image_dir], out, "json", model, settings, progress=False)
        assert out.exists() == (rank == 0)
    assert sorted(i for i, _ in shares[1]) == [1] and sorted(i for i, _ in shares[0]) == [0, 2]
    merged = json.loads((tmp_path / "rank0.json").read_text())
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    single = tmp_path / "single.json"
    detect([image_dir], single, "json", model, settings)
    assert merged == json.loads(single.read_text())


@pytest.mark.parametrize("env, message", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT not"),
    ({"RANK": "3", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "must lie in [0, WORLD_SIZE)"),
    ({"RANK": "one"}, "not whole numbers"),
])
def test_torchrun_variables_set_by_hand_are_one_line(model_files, image_dir, tmp_path, monkeypatch, env, message):
    """``RANK=0 WORLD_SIZE=2`` without torchrun: refused before any work, not a traceback from
    ``init_process_group`` (``MASTER_ADDR expected``)."""
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "o.json"
    result = invoke("detect", image_dir, "--weights", model_files["onnx"], "--out", out)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists()


# --- the shipped weights and examples -------------------------------------------------------------
def test_examples_all_decode_and_give_schema(model_files, tmp_path):
    examples = REPO / "examples"
    found = expand_inputs([examples])[0] if examples.is_dir() else []
    if not found:
        pytest.skip("no example images in examples/")
    out = tmp_path / "examples.json"
    result = invoke("detect", examples, "--weights", model_files["onnx"], "--out", out, "--short-side", "128")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # every shipped example is readable
    data = json.loads(out.read_text())
    assert set(data) == {"model", "settings", "images"}
    assert len(data["images"]) == len(found)
    for entry in data["images"]:
        if "page" in entry:  # a page of examples/newsletter.pdf, rendered at 144 dpi
            assert set(entry) == {"file", "width", "height", "page", "page_size_pt", "dpi", "scale", "detections"}
            assert abs(entry["width"] - entry["page_size_pt"][0] * 2) < 1
            continue
        assert set(entry) == {"file", "width", "height", "scale", "detections"}
        assert entry["scale"]["policy"] == "fixed" and min(entry["scale"]["size"]) == 128  # --short-side 128
        with Image.open(entry["file"]) as im:
            assert max(entry["width"], entry["height"]) == max(im.size)
    assert sum("page" in e for e in data["images"]) == 2  # the example PDF's two pages


def test_shipped_weights_on_examples(tmp_path):
    from dbcli.weights import default_weights_path

    examples = REPO / "examples"
    if not default_weights_path().exists():
        pytest.skip(f"{default_weights_path()} not trained/shipped yet")
    if not expand_inputs([examples])[0]:
        pytest.skip("no example images in examples/")
    out = tmp_path / "polygons.json"
    proc = subprocess.run([sys.executable, "-m", "dbcli.cli", "detect", "examples/", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data) == {"model", "settings", "images"}
    assert len(data["images"]) == len(expand_inputs([examples])[0])
    assert Path(data["model"]["weights"]).name == default_weights_path().name
    assert sum(len(e["detections"]) for e in data["images"]) > 0
    # the default backend (onnxruntime on a CPU) finds the same regions as the torch backend
    torch_out = tmp_path / "torch.json"
    proc = subprocess.run([sys.executable, "-m", "dbcli.cli", "detect", "examples/", "--backend", "torch",
                           "--out", str(torch_out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch_data = json.loads(torch_out.read_text())
    assert data["model"]["backend"] == "onnx" and torch_data["model"]["backend"] == "torch"
    for got, expected in zip(data["images"], torch_data["images"], strict=True):
        assert got["file"] == expected["file"] and len(got["detections"]) == len(expected["detections"])
        for a, b in zip(got["detections"], expected["detections"], strict=True):
            assert np.abs(np.array(a["points"]) - np.array(b["points"])).max() <= 1.0, got["file"]


def test_cuda_device_request_without_cuda_fails_cleanly(model_files, image_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = invoke("detect", image_dir / "a.png", "--weights", model_files["pt"], "--device", "cuda")
    assert result.exit_code == 1 and "error:" in result.stderr and "CUDA" in result.stderr
