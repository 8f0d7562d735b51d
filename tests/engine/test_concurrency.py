"""One writer per output (OUT.lock), and under torchrun a crashed rank ends every rank with its
error instead of leaving them waiting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generated_files import invoke, text_images, write_rgb

from dbcli.backends.base import Model
from dbcli.engine.settings import Settings
from dbcli.workflows.detect import detect_files as detect

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



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

    text_images(tmp_path / "in", 4)
    # fresh processes, as torchrun starts its ranks (a fork of this test process would inherit the locks of
    # the threads earlier tests left running: under load it hung here in two full runs of the suite)
    ctx = multiprocessing.get_context("spawn")
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
