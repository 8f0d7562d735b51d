"""The bench scripts still run (tiny inputs, one pass each) and print their tables. Their figures are
read by people (bench/README.md), never asserted: speed is not tested here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, tmp_path: Path) -> str:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))  # no RapidOCR copy: its rows skip
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_bench_postprocess_runs(tmp_path):
    out = run_bench("bench_postprocess.py", "--maps", "2", "--repeats", "1", tmp_path=tmp_path)
    for row in ("box: dbcli", "box: reference, authors", "polygon: dbcli", "floor: binarize + findContours",
                "target: box mode < 3 ms/map", "cv2.findContours", "the whole box path"):
        assert row in out, row


def test_bench_labels_runs(tmp_path):
    out = run_bench("bench_labels.py", "--crops", "2", "--repeats", "1", tmp_path=tmp_path)
    for row in ("quads: dbcli", "quads: reference", "curved: dbcli", "dbcli labels", "reference labels"):
        assert row in out, row


def test_bench_detect_runs(tmp_path):
    out = run_bench("bench_detect.py", "--count", "1", "--batches", "1", "--repeats", "1", "--short-side", "64",
                    "--bf16", "yes", "--busy", tmp_path=tmp_path)
    for row in ("dbcli general default (auto -> onnx), batch 1", "with ONE competing CPU-bound process",
                "dbcli general torch, batch 1", "dbcli general onnx, batch 1", "dbcli icdar15-r18 torch, batch 1",
                "dbcli general torch bf16, batch 1", "vs icdar15-r18 torch", "skipping the PP-OCR row",
                "network: dbcli icdar15-r18 torch bf16, batch 1", "post-processing: dbcli"):
        assert row in out, row


def test_bench_cuda_runs_or_skips(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full CUDA bench is too long for the test suite")
    assert "skipped: no CUDA device" in run_bench("bench_cuda.py", tmp_path=tmp_path)
    out = run_bench("bench_cuda.py", "--device", "cpu", "--repeats", "1", "--iters", "1", tmp_path=tmp_path)
    assert "inference, network only, batch 1, fp32" in out and "training, batch 2" in out


def test_bench_crops_runs(tmp_path):
    import cv2
    from planted_model import rect_image

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "page.png"), rect_image(160, 120, [(20, 30, 120, 50), (20, 70, 100, 90)]))
    out = run_bench("bench_crops.py", "--images", str(images), "--repeats", "1", "--short-side", "128",
                    tmp_path=tmp_path)
    for row in ("detect --sort none (baseline", "detect (default --sort lines), crops off", "detect --crops DIR",
                "time vs baseline", "crops/s end to end", "cut + PNG encode + atomic write"):
        assert row in out, row


def test_bench_finetune_runs(tmp_path):
    """The docs case end to end on 6 generated pages: a one-step fine-tuning run, then the start and
    the run scored on the held-out test pages."""
    out = run_bench("bench_finetune.py", "--case", "docs", "--pages", "4", "--test-pages", "2", "--minutes", "1",
                    "--out", str(tmp_path / "ft"), "--", "--max-steps", "1", "--crop-size", "64", "--batch-size", "2",
                    "--workers", "0", "--val-fraction", "0.25", "--val-short-side", "64", "--device", "cpu",
                    tmp_path=tmp_path)
    for row in ("case docs: test part 2 images", "general (the start)", "fine-tuned weights.pt", "hmean points",
                "weights.pt = "):
        assert row in out, row


def test_bench_serve_runs(tmp_path):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "street_sign.jpg", images)
    out = run_bench("bench_serve.py", "--images", str(images), "--requests", "2", "--clients", "1,2", "--rounds", "1",
                    "--loops", "1", "--no-compare", tmp_path=tmp_path)
    assert "| serve (CPU default: --max-batch 1) | 2 |" in out and "| dbnet detect" in out


def test_bench_scale_runs(tmp_path):
    out = run_bench("bench_scale.py", "--repeats", "1", "--synthetic", "1", "--icdar-count", "0", "--only", "nine",
                    tmp_path=tmp_path)
    assert "| nine documents on one page, 2262x3000, 14 px | policy (new) |" in out
    assert "| old policy |" in out and "| fixed 736 |" in out and "same regions as the old policy" in out


def test_bench_install_runs(tmp_path):
    import cv2
    import numpy as np

    image = np.full((96, 160, 3), 255, np.uint8)
    cv2.putText(image, "text", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = run_bench("bench_install.py", "--repeats", "1", "--inputs", str(tmp_path / "a.png"), tmp_path=tmp_path)
    for row in ("shipped general (its ONNX file)", "a copy of general's .pt (exported at first run)", "first / second"):
        assert row in out, row
