"""Interrupts: --format jsonl keeps the images done in OUT.partial on Ctrl-C, --resume finishes
them, SIGTERM ends detect like Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from generated_files import invoke, text_images

from dbcli.backends.base import Model
from dbcli.backends.loading import load_model
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import resolve_settings
from dbcli.errors import DBNetError
from dbcli.outputs.writers import partial_path
from dbcli.workflows.detect import DetectInterrupted
from dbcli.workflows.detect import detect_files as detect

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



# --- 5. interrupts and --resume -------------------------------------------------------------------
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
    paths = text_images(tmp_path / "in")
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
    text_images(tmp_path / "in", 6)
    summary = detect([tmp_path / "in"], out, "jsonl", model, settings, progress=False, resume=True)
    assert summary.resumed == 5 and summary.images == 1 and len(out.read_text().splitlines()) == 6


def test_resume_cli(model_files, tmp_path):
    text_images(tmp_path / "in", 2)
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
