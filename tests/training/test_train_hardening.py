"""``dbnet train`` hardening (issue 25): every option checked before any work, an earlier run never
replaced without ``--overwrite``, a bounded batch and image cache that say what they chose, a full
disk while writing a checkpoint as one line, a text-free hold-out not scored, and ``--resume`` saying
which options it ignores. Tiny synthetic datasets, 64 px crops, one or two steps per run."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from generated_files import invoke
from train_data import make_dataset

import dbcli.training.checkpoints as checkpoints
import dbcli.training.loop as loop
import dbcli.weights
from dbcli.data.datasets import load_samples, split_holdout
from dbcli.errors import DBNetError
from dbcli.training.config import TrainConfig, check_config
from dbcli.training.data import TrainDataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), count=5)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread


def train_args(data: Path, out: Path, *extra) -> list:
    return ["train", "--dataset", "custom", "--data-root", data, "--out", out, "--crop-size", "64", "--batch-size",
            "2", "--workers", "0", "--val-fraction", "0", "--val-short-side", "64", "--epochs", "2", "--max-steps",
            "1", "--device", "cpu", *extra]


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def last_line_error(result) -> str:
    """A run that failed after it started: its log lines, then one error line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("error: ") and "Traceback" not in result.output
    return result.output.splitlines()[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- class 5: every numeric and choice option checked at the edge, before any work -----------------
BAD_OPTIONS = [
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-3"], "--batch-size"),
    (["--val-every", "0"], "--val-every"), (["--epochs", "0"], "untrained weights.pt"),
    (["--lr", "-0.1"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"),
    (["--arch", "vgg16"], "--arch must be one of resnet18"), (["--arch", "mobilenet_v3", "--dcn"], "--dcn"),
    (["--workers", "-1"], "--workers"), (["--val-fraction", "1"], "--val-fraction"),
    (["--val-fraction", "-0.1"], "--val-fraction"), (["--val-fraction", "nan"], "--val-fraction"),
    (["--time-limit", "0"], "--time-limit"), (["--time-limit", "-5"], "--time-limit"),
    (["--time-limit", "inf"], "--time-limit"), (["--crop-size", "100"], "multiple of 32"),
    (["--crop-size", "0"], "--crop-size"), (["--crop-size", "65536"], "--crop-size"), (["--seed", "-1"], "--seed"),
    (["--optimizer", "adam"], "--optimizer"), (["--dataset", "coco"], "--dataset"),
    (["--scale-min", "0"], "--scale-min"), (["--scale-min", "2", "--scale-max", "1"], "--scale-min"),
    (["--scale-max", "nan"], "--scale-max"), (["--warmup-steps", "-1"], "--warmup-steps"),
    (["--val-short-side", "8"], "--val-short-side"), (["--max-steps", "-1"], "--max-steps"),
    (["--val-limit", "-1"], "--val-limit"), (["--cache-mb", "-1"], "--cache-mb"), (["--cache-mb", "nan"], "--cache-mb"),
    (["--thresh", "nan"], "--thresh"), (["--box-thresh", "nan"], "--box-thresh"),
    (["--resume", "somewhere", "--overwrite"], "pass one"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_are_one_line_errors_before_any_work(tmp_path, extra, named):
    """The data root does not exist: an option that slipped through would fail there (or later)
    with another message; the run folder is never created."""
    out = tmp_path / "run"
    result = invoke("train", "--dataset", "custom", "--data-root", tmp_path / "no-data", "--out", out,
                    "--device", "cpu", *extra)
    assert named in one_line_error(result)
    assert not out.exists()


def test_the_python_api_checks_the_same_settings():
    for bad in (dict(batch_size=0), dict(lr=float("nan")), dict(epochs=0), dict(save_every=0), dict(log_every=0),
                dict(momentum=1.5), dict(weight_decay=-1.0), dict(max_angle=float("inf")), dict(seed=2**40),
                dict(batch_size=True), dict(post={"thresh": 2.0})):
        with pytest.raises(DBNetError):
            check_config(TrainConfig(**bad))
        with pytest.raises(DBNetError):  # before the device, the data or the folder
            loop.train(TrainConfig(**bad, data_root="/no/such/data"))
    check_config(TrainConfig())  # the defaults pass
    from dbcli.models import ARCHS
    from dbcli.training.config import ARCHS as CHECKED_ARCHS

    assert CHECKED_ARCHS == ARCHS  # (the config's copy, which keeps `dbnet train --help` torch-free)
    check_config(TrainConfig(lr=0.0, val_fraction=0.0, time_limit=0.5, workers=0, cache_mb=0.0))


def test_val_fraction_holding_out_every_image_is_one_error(dataset, tmp_path):
    result = invoke(*train_args(dataset, tmp_path / "run"), "--val-fraction", "0.95")
    assert "holds out all 5 images" in one_line_error(result)


# --- class 1: an earlier run is never replaced without --overwrite --------------------------------
def test_new_run_refuses_a_folder_holding_an_earlier_run(dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # an empty existing folder is fine
    (out / "notes.txt").write_text("mine")  # ... and so are files a run does not write
    assert invoke(*train_args(dataset, out)).exit_code == 0
    before = {name: digest(out / name) for name in ("latest.pt", "weights.pt")}

    message = one_line_error(invoke(*train_args(dataset, out)))
    assert str(out) in message and "--resume" in message and "--overwrite" in message
    assert "latest.pt" in message and "weights.pt" in message
    assert {name: digest(out / name) for name in before} == before  # nothing replaced

    # a weights file of that run as the starting point is refused even with --overwrite
    message = one_line_error(invoke(*train_args(dataset, out, "--init-weights", out / "weights.pt", "--overwrite")))
    assert "--init-weights" in message and "replace" in message
    assert digest(out / "weights.pt") == before["weights.pt"]

    # --overwrite starts again: the earlier run's files are gone, not mixed with the new run's
    (out / "best.pt").write_bytes((out / "latest.pt").read_bytes())  # as if the earlier run had validated
    result = invoke(*train_args(dataset, out, "--overwrite", "--max-steps", "2"))
    assert result.exit_code == 0, result.output
    assert not (out / "best.pt").exists() and (out / "notes.txt").read_text() == "mine"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the new run's epoch only
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 2
    assert "--overwrite: a new run" in (out / "train.log").read_text()


def test_out_naming_a_file_is_refused(dataset, tmp_path):
    out = tmp_path / "photo.png"
    out.write_bytes(b"an input")
    assert "must be a run folder" in one_line_error(invoke(*train_args(dataset, out)))
    assert out.read_bytes() == b"an input"


# --- class 3: bounded batch and image cache, said in the log ---------------------------------------
def test_batch_larger_than_the_dataset_is_capped_with_a_note(dataset, tmp_path):
    out = tmp_path / "run"
    result = invoke(*train_args(dataset, out, "--batch-size", "100000"))
    assert result.exit_code == 0, result.output
    log = (out / "train.log").read_text()
    assert "--batch-size 100000 is more than the 5 training images: batches of 5 are used" in log
    assert torch.load(out / "latest.pt", weights_only=True)["config"]["batch_size"] == 5


def big_dataset(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """Images of the given (width, height), a dark rectangle of text in each, as custom JSONL."""
    root.mkdir(parents=True)
    lines = []
    for i, (w, h) in enumerate(sizes):
        image = np.full((h, w, 3), 220, np.uint8)
        box = [w // 4, h // 3, w // 2, h // 2]
        cv2.rectangle(image, tuple(box[:2]), tuple(box[2:]), (20, 20, 20), -1)
        cv2.imwrite(str(root / f"big{i}.png"), image)
        points = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]
        lines.append(json.dumps({"image": f"big{i}.png", "polygons": [points]}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_image_cache_keeps_to_its_budget_and_says_what_it_chose(tmp_path):
    """Three 1600x1200 images (5.5 MB each decoded); 64 px crops use at most 640 px of an image's
    longer side, so each is stored at 640x480 (0.88 MB): a 2 MB budget holds two of them."""
    data = big_dataset(tmp_path / "data", [(1600, 1200)] * 3)
    out = tmp_path / "run"
    result = invoke(*train_args(data, out, "--cache-mb", "2"))
    assert result.exit_code == 0, result.output
    log = (out / "train.log").read_text()
    assert "image cache: 2 of 3 training images in memory (2 MB of a 2 MB budget, --cache-mb)" in log
    assert "the other 1 are decoded as they are used" in log
    assert "2 stored at 640 px on the longer side" in log
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 1

    result = invoke(*train_args(data, tmp_path / "none", "--cache-mb", "0"))
    assert result.exit_code == 0, result.output
    assert "image cache: 0 of 3 training images in memory" in (tmp_path / "none" / "train.log").read_text()


def test_cached_images_are_stored_at_the_crop_scale_with_their_polygons(tmp_path):
    from dbcli.data.image_cache import MB, cache_images

    data = big_dataset(tmp_path / "data", [(1600, 1200), (300, 200), (1000, 2500)])
    samples = load_samples("custom", data)
    lines: list[str] = []
    cache = cache_images(samples, samples[:1], budget_mb=100, max_side=640, log=lines.append)
    assert [None if im is None else im.shape for im in cache.images] == [(480, 640, 3), (200, 300, 3), (640, 256, 3)]
    for original, stored, image in zip(samples, cache.samples, cache.images):
        scale = image.shape[1] / cv2.imread(str(original.image_path)).shape[1]
        np.testing.assert_allclose(stored.polygons[0], original.polygons[0] * scale, rtol=0.01)
        x0, y0 = np.round(stored.polygons[0].min(0)).astype(int) + 2
        assert image[y0, x0].max() < 60  # the stored polygon still lies on the dark rectangle
    assert cache.val_images is not None and cache.val_images[0].shape == (1200, 1600, 3)  # scored at full size
    small = cache_images(samples, samples[:1], budget_mb=1.0, max_side=640, log=lines.append)
    assert sum(im.nbytes for im in small.images if im is not None) <= MB and small.val_images is None


def test_an_undecodable_uncached_image_is_replaced_by_a_cached_one_with_its_own_polygons(tmp_path, capsys):
    from dbcli.data.augment import AugmentConfig
    from dbcli.data.image_cache import cache_images

    data = big_dataset(tmp_path / "data", [(1600, 1200), (1600, 1200)])
    samples = load_samples("custom", data)
    cache = cache_images(samples, None, budget_mb=1.0, max_side=640, log=print)  # room for the first only
    assert cache.images[1] is None
    (data / "big1.png").write_bytes(b"not a png")
    dataset = TrainDataset(cache.samples, AugmentConfig(crop_size=64), 0, cache.images)
    sample, image = dataset._load(1)
    assert image is cache.images[0] and sample is cache.samples[0] and sample is not samples[0]
    assert "big1.png" in capsys.readouterr().err


def test_default_cache_budget_fits_the_machine(monkeypatch):
    import dbcli.data.image_cache as image_cache

    monkeypatch.setattr(image_cache, "available_memory", lambda: 1024 * image_cache.MB)
    assert image_cache.default_budget_mb() == 256  # a quarter of what is available
    monkeypatch.setattr(image_cache, "available_memory", lambda: 64 * 1024 * image_cache.MB)
    assert image_cache.default_budget_mb() == 2048  # never more than 2 GB
    assert TrainConfig().cache_mb is None and TrainConfig().cache_images


# --- class 5: a full disk while writing a checkpoint -----------------------------------------------
def full_disk_after(calls: int):
    from dbcli.outputs.atomic import atomic_torch_save as real

    count = {"n": 0}

    def save(obj, path):
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path)

    return save


def test_full_disk_while_writing_a_checkpoint_is_one_line_saying_what_is_intact(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoints, "atomic_torch_save", full_disk_after(1))  # epoch 1's latest.pt, then full
    message = last_line_error(invoke(*train_args(dataset, out, "--max-steps", "0")))
    assert f"{out / 'latest.pt'}: cannot write the checkpoint (No space left on device)" in message
    assert "latest.pt is intact" in message and f"--resume {out}" in message
    assert torch.load(out / "latest.pt", weights_only=True)["epoch"] == 1  # the earlier one, whole
    assert not list(out.glob(".*.tmp"))

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(checkpoints, "atomic_torch_save", full_disk_after(0))
    message = last_line_error(invoke(*train_args(dataset, fresh)))
    assert "cannot write the checkpoint" in message and "no checkpoint was written" in message

    monkeypatch.setattr(checkpoints, "atomic_torch_save", full_disk_after(10))
    monkeypatch.setattr(dbcli.weights, "atomic_torch_save", full_disk_after(0))
    final = tmp_path / "final"
    message = last_line_error(invoke(*train_args(dataset, final)))
    assert f"{final / 'weights.pt'}: cannot write the final weights" in message and "latest.pt is intact" in message


# --- class 6: a hold-out without text; --resume says what it ignores -------------------------------
@pytest.mark.parametrize("how", ["no polygons", "only ignored polygons"])
def test_holdout_without_text_is_not_scored(dataset, tmp_path, how):
    """The held-out image has no text to find: its hmean would be 1.000 for a model that finds
    nothing, and best.pt would be picked on it."""
    data = tmp_path / "data"
    data.mkdir()
    for f in dataset.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    _, held_out = split_holdout(load_samples("custom", data), 0.2, 0)
    lines = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    for line in lines:
        if line["image"] == held_out[0].image_path.name:
            line["polygons"] = [] if how == "no polygons" else [{**p, "ignore": True} for p in line["polygons"]]
    (data / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "run"
    result = invoke(*train_args(data, out, "--val-fraction", "0.2", "--val-every", "1", "--max-steps", "0",
                                "--epochs", "1"))
    assert result.exit_code == 0, result.output
    assert "the validation hold-out (1 image) has no text regions" in (out / "train.log").read_text()
    assert not (out / "best.pt").exists()
    assert not any(k.startswith("val_") for k in json.loads((out / "metrics.jsonl").read_text()))


def test_resume_names_the_options_it_ignores(dataset, tmp_path):
    out = tmp_path / "run"
    assert invoke(*train_args(dataset, out, "--epochs", "3")).exit_code == 0
    result = invoke("train", "--resume", out, "--arch", "resnet34", "--batch-size", "1", "--epochs", "9", "--lr",
                    "0.5", "--no-amp", "--out", tmp_path / "elsewhere", "--max-steps", "1", "--workers", "0",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    note = [line for line in (out / "train.log").read_text().splitlines() if "--resume continues the run" in line]
    assert len(note) == 1, result.output
    for said in ("--arch resnet34 (the run's: resnet18)", "--batch-size 1 (the run's: 2)",
                 "--epochs 9 (the run's: 3)", "--lr 0.5 (the run's: 0.007)", "--no-amp (the run's: --amp)",
                 f"--out {tmp_path / 'elsewhere'} (the run's: {out})"):
        assert said in note[0], said
    assert "ignored: " in note[0] and "--workers 0" not in note[0] and "--max-steps 1 " not in note[0]
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["step"] == 2 and state["config"]["batch_size"] == 2 and state["config"]["arch"] == "resnet18"
    assert not (tmp_path / "elsewhere").exists()

    quiet = invoke("train", "--resume", out, "--max-steps", "1", "--workers", "0", "--device", "cpu")
    assert quiet.exit_code == 0 and (out / "train.log").read_text().count("--resume continues the run") == 1
