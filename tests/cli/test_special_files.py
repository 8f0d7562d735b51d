"""Hangs and silent failures (issue 37, item 5): a FIFO or device given as any file dbnet reads is
refused by type (never opened: it would block); closed standard streams; SIGTERM while onnxruntime
runs a model that never ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from generated_files import write_rgb

from dbcli.backends.loading import load_model
from dbcli.data.sample import read_text_lines
from dbcli.errors import DBNetError
from dbcli.evaluation.predictions import _read_json
from dbcli.files import check_regular_file
from dbcli.weights import load_weights

REPO = Path(__file__).resolve().parents[2]


def dbnet(*args: str, cwd: Path, close: int | None = None) -> subprocess.CompletedProcess:
    """``python -m dbcli ARGS`` in a fresh process, descriptor ``close`` closed in it (as ``2>&-`` does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DBNET_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "dbcli", *args], cwd=cwd, env=env, text=True, timeout=300,
                          stdout=None if close == 1 else subprocess.PIPE,
                          stderr=None if close == 2 else subprocess.PIPE,
                          preexec_fn=None if close is None else (lambda: os.close(close)))


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_a_fifo_as_weights_is_refused_without_opening_it(tmp_path, suffix):
    pipe = tmp_path / f"model{suffix}"
    os.mkfifo(pipe)
    for backend in ("onnx", "torch", "auto"):
        if suffix == ".onnx" and backend == "torch":
            continue
        with pytest.raises(DBNetError, match="FIFO") as err:
            load_model(pipe, backend=backend)
        assert str(pipe) in str(err.value)
    with pytest.raises(DBNetError, match="FIFO"):
        load_weights(pipe)


def test_every_reader_refuses_fifos_devices_and_folders(tmp_path, fifo):
    for read in (read_text_lines, _read_json):
        with pytest.raises(DBNetError, match="FIFO"):
            read(fifo)
    with pytest.raises(DBNetError, match="device"):
        check_regular_file(Path("/dev/zero"), "weights file", missing_ok=True)  # would never end
    with pytest.raises(DBNetError, match="a folder, not a weights file"):
        check_regular_file(tmp_path, "weights file", missing_ok=True)
    check_regular_file(tmp_path / "missing", missing_ok=True)  # its reader says it is missing, in its words


def test_training_and_convert_inputs_refuse_fifos(fifo):
    from dbcli.interop.paddleocr import convert
    from dbcli.training.checkpoints import torch_load_checkpoint
    from dbcli.training.pretrained import _read_state

    for read in (torch_load_checkpoint, _read_state, lambda p: convert(p, p.with_name("out.pt"))):
        with pytest.raises(DBNetError, match="FIFO"):
            read(fifo)


def test_detect_with_stderr_closed_writes_its_output(model_files, tmp_path):
    write_rgb(tmp_path / "x.png")
    result = dbnet("detect", "x.png", "--weights", str(model_files["onnx"]), "--out", "o.json", cwd=tmp_path, close=2)
    assert result.returncode == 0, result.stdout
    document = json.loads((tmp_path / "o.json").read_text())  # nothing else written into it
    assert len(document["images"][0]["detections"]) == 1


def test_detect_with_stdout_closed_fails_saying_its_output_was_lost(model_files, tmp_path):
    write_rgb(tmp_path / "x.png")
    result = dbnet("detect", "x.png", "--weights", str(model_files["onnx"]), cwd=tmp_path, close=1)
    assert result.returncode != 0
    assert "stdout is closed" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    with_out = dbnet("detect", "x.png", "--weights", str(model_files["onnx"]), "--out", "o.json", cwd=tmp_path, close=1)
    assert with_out.returncode == 0 and (tmp_path / "o.json").exists()  # its summary goes to stderr


def looping_model(path: Path) -> Path:
    """A dbnet-tagged ONNX file whose graph loops 2^62 times (onnxruntime never returns by itself)."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Sin", ["x_in"], ["x_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
                 helper.make_tensor_value_info("x_in", T.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []), helper.make_tensor_value_info("x_out", T.FLOAT, None)])
    nodes = [helper.make_node("Constant", [], ["trips"], value=helper.make_tensor("t", T.INT64, [], [1 << 62])),
             helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", T.BOOL, [], [True])),
             helper.make_node("ReduceMean", ["image"], ["gray"], axes=[1], keepdims=1),
             helper.make_node("Loop", ["trips", "cond", "gray"], ["looped"], body=body),
             helper.make_node("Sigmoid", ["looped"], ["prob"])]
    graph = helper.make_graph(nodes, "loop", [helper.make_tensor_value_info("image", T.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("prob", T.FLOAT, ["N", 1, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"dbnet.format": "dbnet-onnx/1"})
    onnx.save(model, str(path))
    return path


def test_sigterm_stops_a_model_that_never_returns(tmp_path):
    model = looping_model(tmp_path / "loop.onnx")
    script = textwrap.dedent(f"""
        import os, signal, threading
        import numpy as np
        from dbcli.backends.onnx_backend import OnnxBackend
        from dbcli.commands.common import sigterm_as_interrupt
        backend = OnnxBackend({str(model)!r}, "cpu")
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        with sigterm_as_interrupt():
            try:
                backend(np.zeros((1, 3, 32, 32), np.float32))
            except KeyboardInterrupt:
                print("interrupted", threading.active_count())
                raise SystemExit(3)
        """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "interrupted 1" in result.stdout, result.stderr[-2000:]


def test_the_training_image_cache_never_opens_a_fifo(tmp_path, fifo):
    from dbcli.data.image_cache import _header_size
    from dbcli.data.sample import Sample

    named = tmp_path / "img_1.jpg"
    os.mkfifo(named)
    assert _header_size(Sample(named)) is None  # decoding says why, as for any unreadable image
