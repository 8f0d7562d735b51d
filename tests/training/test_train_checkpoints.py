"""Training checkpoints: a bad --resume file is one error naming it, checkpoints load with
weights_only and --resume keeps the run's workers and removes stale temp files, the default
workers fit the machine, validation reports the candidate cap in its result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from generated_files import invoke

from dbcli.data.datasets import load_samples
from dbcli.errors import DBNetError

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread



# --- train: --resume, checkpoints, workers, the candidate cap --------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from train_data import make_dataset

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
    from dbcli.training.checkpoints import load_checkpoint
    from dbcli.training.loop import train

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

    import dbcli.engine.pipeline as engine
    from dbcli.models import DBNet
    from dbcli.postprocess.boxes import PostConfig
    from dbcli.training.validation import validate

    def capped(prob, width, height, config):
        return [], 5000  # 5000 candidate regions, more than max_candidates (1000)

    monkeypatch.setattr(engine, "detections_and_candidates", capped)
    samples = load_samples("custom", tiny_data, "train")[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = validate(DBNet(), samples, None, torch.device("cpu"), 64, PostConfig(), None)
    assert result["capped_images"] == 2
