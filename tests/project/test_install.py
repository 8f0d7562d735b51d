"""Issue 35, installing like a tool: detection, visualisation, evaluation, the API and the service run
with onnxruntime alone (torch blocked in a subprocess, ``tests/no_torch.py``), the shipped detectors run
from their shipped ONNX files (pinned, checked against the ``.pt``: no export at first run), what needs
torch says so in one line, a user's ``.pt`` export is said and timed, and ``dbnet export`` never writes
into an installed package."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from no_torch import CLI, _env, one_line_error, run_cli, run_code, torch_stayed_out

from dbcli import weights as weights_module
from dbcli.backends.loading import load_model
from dbcli.backends.onnx_cache import SHA_KEY
from dbcli.errors import DBNetError
from dbcli.extras import DISTRIBUTION, install_command, torch_available
from dbcli.files import file_sha256
from dbcli.weights import SHIPPED, shipped_onnx, weights_dir

TRAIN_HINT = "pip install 'dbnet-cli[train]'"


def text_image(path: Path, lines: tuple[str, ...] = ("Hello from dbnet", "install like a tool")) -> Path:
    """A white RGB page with black text lines, written to ``path``."""
    image = np.full((60 + 70 * len(lines), 640, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (20, 60 + 70 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (0, 0, 0), 3)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A folder with two text images (``images/``) and them as a custom dataset (``test.jsonl``)."""
    root = tmp_path_factory.mktemp("user")
    (root / "images").mkdir()
    text_image(root / "images" / "a.png")
    text_image(root / "images" / "b.png", ("scene text", "detection"))
    (root / "test.jsonl").write_text("".join(
        json.dumps({"image": f"images/{name}", "polygons": [{"points": [[20, 25], [420, 25], [420, 75], [20, 75]]}]})
        + "\n" for name in ("a.png", "b.png")))
    return root


# --- the torch-free install ---------------------------------------------------------------------------------
def test_detect_without_torch_runs_the_shipped_onnx_and_matches_torch(user_dir, tmp_path, cli_runner):
    from dbcli.cli import app

    cache = tmp_path / "cache"
    proc = run_cli(["detect", "images", "--out", str(tmp_path / "no_torch.json")], user_dir, cache)
    assert proc.returncode == 0 and torch_stayed_out(proc), proc.stderr[-3000:]
    assert "exporting" not in proc.stderr and not cache.exists()  # the shipped model is not exported
    with_torch = cli_runner.invoke(app, ["detect", str(user_dir / "images"), "--out", str(tmp_path / "torch.json")])
    assert with_torch.exit_code == 0, with_torch.output
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("no_torch", "torch"))
    assert a["model"]["backend"] == "onnx" and a["model"]["weights"].endswith("dbnet_mobilenetv3_general.pt")
    assert sum(len(image["detections"]) for image in a["images"]) >= 3
    assert [i["detections"] for i in a["images"]] == [i["detections"] for i in b["images"]]
    assert a["model"] == b["model"] and a["settings"] == b["settings"]


def test_visualize_eval_and_the_api_without_torch(user_dir, tmp_path):
    proc = run_cli(["visualize", "images", "--out", str(tmp_path / "vis")], user_dir, tmp_path / "cache")
    assert proc.returncode == 0 and torch_stayed_out(proc), proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "vis").iterdir() if p.suffix == ".png")
    proc = run_cli(["eval", "--dataset", "custom", "--data-root", ".", "--split", "test", "--weights", "icdar15"],
                   user_dir, tmp_path / "cache")
    assert proc.returncode == 0 and torch_stayed_out(proc), proc.stderr[-3000:]
    assert "hmean" in (proc.stdout + proc.stderr).lower()
    code = ("from dbcli import Detector\nimport cv2\n"
            "result = Detector()(cv2.cvtColor(cv2.imread('images/a.png'), cv2.COLOR_BGR2RGB), crops=True)\n"
            "print(len(result.detections), result.crops[0].shape)\n")
    proc = run_code(code, user_dir, tmp_path / "cache")
    assert proc.returncode == 0 and torch_stayed_out(proc), proc.stderr[-3000:]
    count, _ = proc.stdout.split(" ", 1)
    assert int(count) >= 2 and "3)" in proc.stdout


def test_serve_without_torch(user_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--port", str(port)], cwd=user_dir,
                              env=_env(tmp_path / "cache"), stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):
            try:
                health = json.load(urllib.request.urlopen(base + "/health", timeout=2))
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.1)
        else:
            pytest.fail("dbnet serve did not answer /health")
        body = (user_dir / "images" / "a.png").read_bytes()
        request = urllib.request.Request(base + "/detect?filename=a.png", data=body,
                                         headers={"Content-Type": "application/octet-stream"})
        answer = json.load(urllib.request.urlopen(request, timeout=120))
        assert health["model"]["backend"] == "onnx" and len(answer["images"][0]["detections"]) >= 2
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    assert err.rstrip().endswith("TORCH_MODULES="), err[-3000:]


@pytest.mark.parametrize("args", [
    ["train", "--dataset", "custom", "--data-root", ".", "--out", "run"],
    ["export"],
    ["convert", "model.onnx", "--out", "w.pt"],
    ["detect", "images", "--backend", "torch"],
    ["detect", "images", "--precision", "bf16"],
], ids=["train", "export", "convert", "backend-torch", "bf16"])
def test_what_needs_torch_says_so_in_one_line(args, user_dir, tmp_path):
    line = one_line_error(run_cli(args, user_dir, tmp_path / "cache"))
    assert line.endswith(f"needs PyTorch: {TRAIN_HINT}"), line


def test_a_user_pt_without_torch_says_how_to_export_it(model_files, user_dir, tmp_path):
    line = one_line_error(run_cli(["detect", "images", "--weights", str(model_files["pt"])], user_dir,
                                  tmp_path / "empty-cache"))
    assert str(model_files["pt"]) in line and TRAIN_HINT in line and "dbnet export" in line, line


# --- the shipped ONNX files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shipped", [s for s in SHIPPED if s.onnx_sha256], ids=lambda s: s.name)
def test_shipped_onnx_is_pinned_and_carries_the_pt_metadata(shipped):
    import onnxruntime as ort

    pt, onnx = weights_dir() / shipped.file, weights_dir() / shipped.onnx
    assert shipped_onnx(pt) == onnx and file_sha256(onnx) == shipped.onnx_sha256
    meta = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta[SHA_KEY] == file_sha256(pt) and meta["dbnet.source"] == shipped.file
    pytest.importorskip("torch")
    data = weights_module.load_weights(pt)
    assert json.loads(meta["dbnet.model"]) == data["model"]
    assert json.loads(meta["dbnet.postprocess"]) == data["postprocess"]
    assert int(meta["dbnet.short_side"]) == data["short_side"]


@pytest.mark.parametrize("name", ["general", "icdar15"])
def test_shipped_onnx_matches_a_fresh_export_of_the_pt(name):
    """The shipped file computes what the ``.pt`` computes (re-exported now and run by torch) within 1e-4."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from dbcli.backends.export import export_bytes, verification_input

    pt = weights_module.resolve_weights(name)
    test = verification_input(batch=2, height=150, width=260, seed=3)
    shipped = ort.InferenceSession(str(shipped_onnx(pt)), providers=["CPUExecutionProvider"])
    fresh = ort.InferenceSession(export_bytes(pt, "onnx")[0], providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = weights_module.build_model(weights_module.load_weights(pt))(torch.from_numpy(test))["prob"].numpy()
    got = shipped.run(["prob"], {"images": test})[0]
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - fresh.run(["prob"], {"images": test})[0]).max() < 1e-4


@pytest.mark.parametrize("name", ["general", "icdar15", "icdar15-mv3"])
def test_shipped_names_load_their_onnx_without_export(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DBNET_CACHE", str(tmp_path / "cache"))
    model = load_model(name, "auto", "cpu")
    assert model.info["backend"] == "onnx" and model.export_seconds == 0.0
    assert model.info["weights"] == str(weights_module.resolve_weights(name))
    assert not (tmp_path / "cache").exists() and "exporting" not in capsys.readouterr().err


def test_a_damaged_shipped_onnx_is_a_one_line_error(tmp_path, monkeypatch):
    import shutil

    for name in ("dbnet_mobilenetv3_general.pt", "dbnet_mobilenetv3_general.onnx"):
        shutil.copyfile(weights_dir() / name, tmp_path / name)
    monkeypatch.setattr(weights_module, "weights_dir", lambda: tmp_path)
    assert load_model("general", "onnx", "cpu").info["backend"] == "onnx"  # the copy is intact
    data = bytearray((tmp_path / "dbnet_mobilenetv3_general.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight tensor: it would still load
    (tmp_path / "dbnet_mobilenetv3_general.onnx").write_bytes(bytes(data))
    with pytest.raises(DBNetError, match=r"dbnet_mobilenetv3_general.onnx: damaged .* reinstall dbnet-cli"):
        load_model("general", "onnx", "cpu")
    if torch_available():  # auto falls back to torch, saying why (without torch: the error above)
        model = load_model("general", "auto", "cpu")
        assert model.info["backend"] == "torch" and "damaged" in (model.note or "")


def test_a_file_left_out_of_the_wheel_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "weights_dir", lambda: tmp_path)  # a wheel's shipped_weights/: no R18
    for backend in ("auto", "onnx"):
        with pytest.raises(DBNetError, match=r"icdar15-r18 .* not in the installed package .* --weights FILE"):
            load_model("icdar15-r18", backend, "cpu")


# --- a user's .pt: the export said, timed and counted -------------------------------------------------------
def test_a_user_pt_export_is_said_on_stderr_with_its_time(model_files, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setenv("DBNET_CACHE", str(tmp_path / "cache"))
    first = load_model(model_files["pt"], "auto", "cpu")
    err = capsys.readouterr().err
    assert f"exporting {model_files['pt']} to ONNX once, cached in {tmp_path / 'cache'}" in err
    assert first.info["backend"] == "onnx" and first.export_seconds > 0
    assert f"in {first.export_seconds:.1f} s" in err
    second = load_model(model_files["pt"], "auto", "cpu")  # from the cache: nothing said, nothing counted
    assert second.export_seconds == 0.0 and "exporting" not in capsys.readouterr().err


def test_the_closing_line_counts_the_export(model_files, tmp_path):
    from dbcli.workflows.detect import detect_files

    model = replace(load_model(model_files["onnx"], "onnx", "cpu"), export_seconds=1000.0)
    image = text_image(tmp_path / "a.png")
    summary = detect_files([str(image)], str(tmp_path / "out.json"), "json", model)
    assert summary.seconds >= 1000.0


# --- dbnet export's default output ----------------------------------------------------------------------------
def test_export_default_out_never_inside_an_installed_package(tmp_path, monkeypatch):
    from dbcli.interop.export import default_out

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    assert default_out(run / "weights.pt", "onnx") == run / "weights.onnx"
    assert default_out(run / "weights.pt", "torchscript") == run / "weights.ts"
    installed = tmp_path / "venv" / "lib" / "site-packages" / "dbcli" / "shipped_weights"
    installed.mkdir(parents=True)
    assert default_out(installed / "w.pt", "onnx") == tmp_path / "w.onnx"
    assert default_out("general", "onnx") == tmp_path / "dbnet_mobilenetv3_general.onnx"  # a shipped file


# --- the name users type ------------------------------------------------------------------------------------
def test_every_install_hint_names_our_distribution():
    root = Path(__file__).resolve().parents[2]
    assert install_command("train") == TRAIN_HINT and DISTRIBUTION == "dbnet-cli"
    files = [*root.glob("dbcli/**/*.py"), root / "README.md", *root.glob("docs/*.md"), *root.glob(".ci/*")]
    for path in files:
        text = path.read_text()
        assert "dbnet[" not in text and "github.com/OWNER" not in text, path
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert not any(dep.startswith(("torch", "onnx>", "onnx=")) for dep in project["dependencies"])
    assert any(dep.startswith("torch") for dep in project["optional-dependencies"]["train"])
