"""One run per run folder (issue 37, item 3): ``dbnet train --out R`` holds ``R.lock`` (the lock
``dbnet detect`` takes on its output) for the whole run, so a second run into R is refused naming the
folder and the live run; a lock left by a dead process is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from generated_files import invoke
from train_data import make_dataset

import dbcli.training.loop as loop
from dbcli.outputs.atomic import lock_path

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread


def train_args(data: Path, out: Path, *extra) -> list:
    return ["train", "--dataset", "custom", "--data-root", data, "--out", out, "--crop-size", "64", "--batch-size",
            "2", "--workers", "0", "--val-fraction", "0", "--val-short-side", "64", "--epochs", "1", "--max-steps",
            "1", "--device", "cpu", *extra]


@pytest.fixture
def live_process():
    """Another live process (it holds locks in these tests), ended after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def test_a_second_run_into_a_held_folder_is_refused_naming_the_live_run(tmp_path, live_process):
    data, out = make_dataset(tmp_path / "data", count=3), tmp_path / "run"
    lock = lock_path(out)
    lock.write_text(f"{live_process.pid} {socket.gethostname()} 2026-01-01 10:00:00\n")
    for extra in ((), ("--overwrite",)):
        result = invoke(*train_args(data, out, *extra))
        assert result.exit_code == 1 and result.output.startswith("error: "), result.output
        assert str(out) in result.output and f"pid {live_process.pid}" in result.output
        assert "Traceback" not in result.output
    assert not out.exists()  # refused before the folder was made, let alone written
    lock.write_text(f"{live_process.pid} another-host.example 2026-01-01 10:00:00\n")  # a shared folder
    assert "another-host.example" in invoke(*train_args(data, out)).output


def test_a_stale_lock_is_taken_over_and_the_lock_is_held_for_the_whole_run(tmp_path, monkeypatch):
    data, out = make_dataset(tmp_path / "data", count=3), tmp_path / "run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path(out).write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")  # its process has ended
    seen = []
    epochs = loop._train_epochs

    def spying(run, *args):
        seen.append(lock_path(run.out).read_text().split()[0])
        return epochs(run, *args)

    monkeypatch.setattr(loop, "_train_epochs", spying)
    result = invoke(*train_args(data, out))
    assert result.exit_code == 0, result.output
    assert seen == [str(os.getpid())]  # held by this run while it trained
    assert not lock_path(out).exists() and (out / "weights.pt").exists()  # released at the end
    resumed = invoke("train", "--resume", out, "--epochs", "2", "--max-steps", "2")  # a resume takes it too
    assert resumed.exit_code == 0, resumed.output
    assert len(seen) == 2 and not lock_path(out).exists()


def test_visualize_holds_its_output_folder_too(tmp_path, live_process):
    import numpy as np
    from generated_files import write_rgb

    from dbcli.backends.base import Model
    from dbcli.errors import DBNetError
    from dbcli.workflows.visualize import visualize_files

    image, out = write_rgb(tmp_path / "x.png"), tmp_path / "drawn"
    model = Model(lambda batch: np.zeros(batch.shape[:1] + batch.shape[2:], np.float32), {"backend": "fake"})
    lock_path(out).write_text(f"{live_process.pid} {socket.gethostname()}\n")
    with pytest.raises(DBNetError, match=f"pid {live_process.pid}"):
        visualize_files([image], out, model=model)
    assert not out.exists()
    lock_path(out).unlink()
    assert visualize_files([image], out, model=model).written and not lock_path(out).exists()
