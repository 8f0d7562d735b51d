"""The default backend (``auto``, issue 23): onnxruntime on a CPU when it imports, torch when it does not
or when only torch can do the job; a ``.pt`` file's ONNX export made once, cached by content, re-made
when damaged, kept in memory when the cache cannot be written; the same detections as torch."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from planted_model import planted_files, rect_image

import dbcli.backends.export
from dbcli import Detector
from dbcli.backends.loading import load_model, pick_backend
from dbcli.backends.onnx_cache import cache_dir, cache_path
from dbcli.cpu import quiet_openmp
from dbcli.files import file_sha256

RECTS = [(20, 30, 140, 60), (60, 100, 230, 130)]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own, and a counter of the exports made."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DBNET_CACHE", str(folder))
    calls: list[Path] = []
    real = dbcli.backends.export.export_bytes

    def counting(weights, *args, **kwargs):
        calls.append(Path(weights))
        return real(weights, *args, **kwargs)

    monkeypatch.setattr(dbcli.backends.export, "export_bytes", counting)
    return folder, calls


def exports(folder: Path) -> list[Path]:
    """The cached exports in ``folder`` (its key file left out)."""
    return sorted(folder.glob("dbnet-*.onnx"))


def test_auto_picks_onnx_on_a_cpu_and_torch_where_only_torch_can(monkeypatch):
    pt, onnx = Path("w.pt"), Path("w.onnx")
    assert pick_backend(None, pt, "cpu") == pick_backend("auto", pt, "cpu") == "onnx"
    assert pick_backend("auto", onnx, "cpu") == "onnx"
    assert pick_backend("auto", pt, "cpu", precision="bf16") == "torch"
    assert pick_backend("auto", pt, "cpu", maps=True) == "torch"
    assert pick_backend("auto", pt, "cuda") == pick_backend("auto", pt, "cuda:1") == "torch"
    assert pick_backend("torch", pt, "cpu") == "torch" and pick_backend("onnx", pt, "cpu") == "onnx"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # blocked: `import onnxruntime` fails
    assert pick_backend("auto", pt, "cpu") == "torch"


def test_without_onnxruntime_the_default_runs_torch(model_files, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = load_model(model_files["pt"], device="cpu")
    assert model.info["backend"] == "torch" and model.uses_torch
    assert cache[1] == [] and not cache[0].exists()


def test_the_export_is_made_once_and_reused(model_files, cache):
    folder, calls = cache
    first = load_model(model_files["pt"], device="cpu")
    assert first.info["backend"] == "onnx" and first.info["weights"] == str(model_files["pt"])
    assert not first.uses_torch and first.maps_fn is None
    files = exports(folder)
    assert len(calls) == 1 and files == [cache_path(file_sha256(model_files["pt"]))]
    second = load_model(model_files["pt"], device="cpu")  # no export: the cached file
    assert len(calls) == 1 and exports(folder) == files
    assert second.prob_fn.label == str(files[0]) and second.note is None
    assert second.postprocess == first.postprocess and second.short_side == first.short_side


def test_the_cache_is_keyed_by_content(model_files, cache, tmp_path):
    folder, calls = cache
    load_model(model_files["pt"], device="cpu")
    renamed = tmp_path / "renamed.pt"  # same bytes, other name: the same export
    shutil.copyfile(model_files["pt"], renamed)
    load_model(renamed, device="cpu")
    assert len(calls) == 1
    import torch

    changed = tmp_path / "changed.pt"  # other bytes: a new export
    data = torch.load(model_files["pt"], weights_only=True)
    data["postprocess"] = {**(data.get("postprocess") or {}), "box_thresh": 0.42}
    torch.save(data, changed)
    model = load_model(changed, device="cpu")
    assert len(calls) == 2 and len(exports(folder)) == 2
    assert model.info["backend"] == "onnx" and model.postprocess["box_thresh"] == 0.42


def test_an_unwritable_cache_exports_in_memory(model_files, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DBNET_CACHE", str(blocker / "cache"))  # cannot be made, even by root
    assert cache_dir() == blocker / "cache"
    detector = Detector(model_files["pt"], device="cpu")
    assert detector.info["backend"] == "onnx" and "in memory" in detector.model.prob_fn.label
    assert "cannot be used" in (detector.model.note or "") and "kept in memory" in (detector.model.note or "")
    result = detector(rect_image(260, 170, RECTS))
    assert len(result.detections) == len(RECTS)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "another model"])
def test_a_damaged_cache_file_is_made_again(model_files, cache, damage, tmp_path):
    folder, calls = cache
    load_model(model_files["pt"], device="cpu")
    path = cache_path(file_sha256(model_files["pt"]))
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not an onnx model")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:  # a loadable dbnet export, but not of this file
        shutil.copyfile(model_files["onnx"], path)
    model = load_model(model_files["pt"], device="cpu")
    assert len(calls) == 2 and model.info["backend"] == "onnx"
    assert model.prob_fn.label == str(path) and path.read_bytes() == good


def test_the_default_detects_what_torch_detects(model_files):
    rgb = rect_image(300, 190, RECTS)
    default = Detector(model_files["pt"], device="cpu")  # no backend named: auto
    torch_detector = Detector(model_files["pt"], device="cpu", backend="torch")
    assert default.info["backend"] == "onnx" and torch_detector.info["backend"] == "torch"
    got, expected = default(rgb).detections, torch_detector(rgb).detections
    assert len(got) == len(expected) == len(RECTS)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.points, b.points, atol=1e-3)
        assert abs(a.score - b.score) < 1e-4


def test_quiet_openmp_sets_the_policy_only_before_torch_and_only_if_unset(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "torch" in sys.modules and not quiet_openmp()  # too late: OpenMP already read it
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")
    assert quiet_openmp() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stays
    assert not quiet_openmp() and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_without_the_onnx_exporter_the_default_falls_back_to_torch(model_files, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # torch.onnx.export needs it: no export can be made
    model = load_model(model_files["pt"], device="cpu")
    assert model.info["backend"] == "torch" and "no ONNX model" in (model.note or "")
    assert "onnx package" in (model.note or "") and not any(cache[0].glob("*.onnx"))
