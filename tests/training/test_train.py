"""``dbnet train`` on a tiny synthetic dataset, on CPU: checkpoints, weights, exact ``--resume``,
the NaN guard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from generated_files import runner
from train_data import make_dataset, small_config

import dbcli.training.loop as train_module
import dbcli.training.schedule as schedule
from dbcli.cli import app
from dbcli.errors import DBNetError
from dbcli.training.config import TrainConfig
from dbcli.training.loop import train
from dbcli.weights import build_model, load_weights


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


# 64 px crops gain nothing from intra-op threads, and oversubscribed threads (another process busy on
# the same cores) make CPU training many times slower.
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread


def test_cli_two_steps_then_resume(dataset, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--dataset", "custom", "--data-root", str(dataset), "--out", str(run), "--epochs", "3",
            "--crop-size", "64", "--batch-size", "2", "--workers", "0", "--max-steps", "2", "--val-every", "1",
            "--val-fraction", "0", "--device", "cpu"]  # (validation at 736 px is tested below at 64 px)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("latest.pt", "weights.pt", "train.log", "metrics.jsonl", "config.json"):
        assert (run / name).is_file(), name
    latest = torch.load(run / "latest.pt", map_location="cpu", weights_only=False)
    assert latest["step"] == 2
    # weights.pt is a plain dict of tensors: loadable without unpickling code, and by detect/eval
    raw = torch.load(run / "weights.pt", map_location="cpu", weights_only=True)
    assert raw["format"] == "dbnet-weights" and raw["train"]["steps"] == 2
    # the record and the log count epochs alike; the arithmetic is said in words (not "amp=None")
    log = (run / "train.log").read_text()
    record = raw["train"]
    assert "2 steps/epoch" in log and "epoch 1: loss" in log and "partial" not in log
    assert (record["epochs_done"], record["last_epoch"], record["last_epoch_complete"]) == (1, 1, True)
    assert "amp=" not in log and re.search(r"on cpu, (fp32 \(no mixed precision\)|mixed precision bf16)", log)
    weights = load_weights(run / "weights.pt")
    model = build_model(weights)
    with torch.inference_mode():
        prob = model(torch.zeros(1, 3, 64, 96))["prob"]
    assert prob.shape == (1, 1, 64, 96) and torch.isfinite(prob).all()
    torch.testing.assert_close(model.state_dict()["prob_head.body.6.bias"],
                               latest["model_state"]["prob_head.body.6.bias"].half().float())

    resumed = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "1", "--workers", "0",
                                  "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    after = torch.load(run / "latest.pt", map_location="cpu", weights_only=False)
    assert after["step"] == 3  # the step count continues
    assert torch.load(run / "weights.pt", weights_only=True)["train"]["steps"] == 3
    assert "resumed from" in (run / "train.log").read_text()


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_resume_continues_exactly(dataset, tmp_path):
    """1 epoch + resume 1 epoch, and a stop in the middle of an epoch + resume, give bit for bit the
    model and optimizer of 2 epochs straight."""
    train(small_config(dataset, tmp_path / "straight", epochs=2))
    a = _state(tmp_path / "straight" / "latest.pt")
    assert a["step"] == 4 and a["epoch"] == 2  # 4 train images, batch 2: 2 steps per epoch
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all("val_hmean" in r for r in records)

    for stop_after in (2, 3):  # the end of epoch 1; the middle of epoch 2
        run = tmp_path / f"stop{stop_after}"
        train(small_config(dataset, run, epochs=2, max_steps=stop_after))
        stopped = _state(run / "latest.pt")
        assert stopped["step"] == stop_after
        train(TrainConfig(resume=str(run), workers=0, device="cpu"))
        b = _state(run / "latest.pt")
        assert b["step"] == 4 and b["epoch"] == 2
        assert a["model_state"].keys() == b["model_state"].keys()
        for key in a["model_state"]:
            assert torch.equal(a["model_state"][key], b["model_state"][key]), (stop_after, key)
        momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
        momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
        assert len(momentum_a) == len(momentum_b) > 0
        assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b)), stop_after
        # and the model did change after the resume
        key = "prob_head.body.6.bias"
        assert not torch.equal(stopped["model_state"][key], b["model_state"][key])


def test_nan_loss_is_skipped_then_stops(dataset, tmp_path, monkeypatch):
    real_loss = train_module.db_loss
    calls = {"n": 0}

    def nan_on_second_call(outputs, batch, config):
        parts = real_loss(outputs, batch, config)
        calls["n"] += 1
        if calls["n"] == 2:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(train_module, "db_loss", nan_on_second_call)
    out = train(small_config(dataset, tmp_path / "once", epochs=5, max_steps=2, val_fraction=0.0))
    assert _state(out / "latest.pt")["step"] == 2 and calls["n"] == 3  # the bad step did not count
    assert "non-finite loss" in (out / "train.log").read_text()

    def always_nan(outputs, batch, config):
        parts = real_loss(outputs, batch, config)
        parts["loss"] = parts["loss"] * float("inf") * 0.0
        return parts

    monkeypatch.setattr(train_module, "db_loss", always_nan)
    torch.manual_seed(0)
    config = small_config(dataset, tmp_path / "nan", epochs=20, batch_size=1, val_fraction=0.0, save_every=100)
    with pytest.raises(DBNetError, match="not finite 10 steps in a row"):
        train(config)
    # no optimizer step was taken: the parameters are still their initial values
    from dbcli.models import DBNet, ModelConfig

    torch.manual_seed(config.seed)
    initial = DBNet(ModelConfig()).state_dict()
    final = load_weights(tmp_path / "nan" / "weights.pt")["state_dict"]
    params = {name for name, _ in DBNet(ModelConfig()).named_parameters()}
    assert all(torch.equal(final[k], initial[k].half()) for k in params)


def test_torchrun_two_processes(dataset, tmp_path):
    """DDP on CPU (gloo) under torchrun: both ranks train, rank 0 writes the run folder."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "dbcli.cli", "train", "--dataset", "custom", "--data-root", str(dataset), "--out", str(out),
         "--crop-size", "64", "--batch-size", "1", "--workers", "0", "--epochs", "1", "--val-fraction", "0",
         "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch 1 x 2" in (out / "train.log").read_text()  # two processes shared each step
    # 5 images, 2 processes x batch 1: 2 steps per epoch (the 5th image waits for the next epoch)
    assert load_weights(out / "weights.pt")["train"]["steps"] == 2


def test_a_run_stopped_inside_an_epoch_says_so_alike_in_log_and_weights(dataset, tmp_path):
    """--max-steps 1 of an epoch of 2 steps: the log's epoch 1 is "partial", and weights.pt records
    0 complete epochs, the last epoch 1 and that it was not complete (the log's numbers)."""
    run = tmp_path / "run"
    train(small_config(dataset, run, epochs=3, max_steps=1, val_fraction=0))
    log = (run / "train.log").read_text()
    assert "2 steps/epoch" in log and "epoch 1 (partial: 1 of 2 steps; 0 epochs complete): loss" in log
    record = load_weights(run / "weights.pt")["train"]
    assert (record["epochs_done"], record["last_epoch"], record["last_epoch_complete"]) == (0, 1, False)


def test_resumed_run_keeps_its_clock(dataset, tmp_path):
    """--time-limit / --time-schedule count the earlier sessions of a resumed run: a run that already
    trained 10 minutes stops after one more step under a 5-minute limit, and under a 20-minute
    schedule resumes halfway down the poly decay."""
    run = tmp_path / "run"
    train(small_config(dataset, run, epochs=4, max_steps=1))
    state = _state(run / "latest.pt")
    assert 0 < state["train_seconds"] < 600
    state["train_seconds"] = 600.0  # as if the first session had taken 10 minutes
    torch.save(state, run / "latest.pt")

    train(TrainConfig(resume=str(run), workers=0, device="cpu", time_limit=5.0))
    assert _state(run / "latest.pt")["step"] == 2
    assert "--time-limit 5.0 min reached" in (run / "train.log").read_text().splitlines()[-2]
    # a resume that does not repeat the budget keeps the run's (5 minutes, already spent)
    train(TrainConfig(resume=str(run), workers=0, device="cpu"))
    assert _state(run / "latest.pt")["step"] == 3
    assert "--time-limit 5.0 min reached" in (run / "train.log").read_text().splitlines()[-2]

    train(TrainConfig(resume=str(run), workers=0, device="cpu", time_limit=20.0, time_schedule=True,
                      max_steps=1))
    resumed = _state(run / "latest.pt")
    assert resumed["step"] == 4 and resumed["train_seconds"] > 600
    assert resumed["config"]["time_limit"] == 20.0 and resumed["config"]["time_schedule"] is True
    lr = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    lr0 = small_config(dataset, run).lr
    assert lr <= lr0 * 0.5 ** 0.9 + 1e-12  # at least half of the 20-minute budget was already spent
    assert lr > 0.0


@pytest.mark.parametrize("schedule", [None, False])
def test_time_limit_fits_the_lr_schedule_unless_told_not_to(dataset, tmp_path, schedule):
    """--time-limit alone (schedule None, as the CLI passes it) ends the poly decay at the time limit,
    so a run stopped by it ends at a low lr; --no-time-schedule keeps the epochs' schedule and the
    stop line says the lr it stopped at. The first session's clock is set to 9 min 59.999 s of a
    10-minute budget, so the second stops after its first step, with no timing in the assertions."""
    run = tmp_path / "run"
    train(small_config(dataset, run, epochs=50, max_steps=1, time_limit=10.0, time_schedule=schedule))
    assert json.loads((run / "config.json").read_text())["time_schedule"] is (schedule is None)
    log = (run / "train.log").read_text()
    assert ("ends at the time limit" in log) is (schedule is None)
    assert ("may still be near its peak" in log) is (schedule is False)
    state = _state(run / "latest.pt")
    state["train_seconds"] = 599.999
    torch.save(state, run / "latest.pt")

    train(TrainConfig(resume=str(run), workers=0, device="cpu"))
    assert _state(run / "latest.pt")["step"] == 2
    lr = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    lr0 = small_config(dataset, run).lr
    stop = [line for line in (run / "train.log").read_text().splitlines() if "stopped:" in line][-1]
    assert "--time-limit 10.0 min reached" in stop
    if schedule is None:
        assert 0.0 <= lr <= lr0 * (0.1 / 600) ** 0.9 + 1e-12
        assert "lr at" not in stop
    else:
        assert lr >= lr0 * (1 - 2 / 100) ** 0.9 - 1e-12  # step 1 of 100 (2 steps x 50 epochs)
        assert f"at step 2 of 100, with the lr at {lr:.3g} ({lr / lr0:.0%} of --lr {lr0:g})" in stop
        assert "set for 50 epochs" in stop


def test_undecodable_image_without_cache_is_replaced(dataset, tmp_path, capsys):
    """--no-cache-images decodes in the loader: a corrupt image is reported by name and another image
    trains in its place, instead of a worker traceback."""
    data = tmp_path / "data"
    data.mkdir()
    for f in dataset.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    (data / "s1.png").write_bytes(b"not a png at all")
    run = tmp_path / "run"
    train(small_config(data, run, epochs=1, batch_size=1, cache_images=False, val_fraction=0.0))
    assert _state(run / "latest.pt")["epoch"] == 1
    err = capsys.readouterr().err
    assert "s1.png" in err and "another image in its place" in err


def test_init_weights_fine_tunes_from_a_weights_file(dataset, tmp_path):
    """--init-weights starts from every layer of a weights file (not a fresh init), with a new
    optimizer and step count; a file of another architecture is refused before any image is read."""
    first = tmp_path / "first"
    train(small_config(dataset, first, max_steps=2, val_fraction=0.0))
    start = load_weights(first / "weights.pt")["state_dict"]

    # lr 0: the optimizer cannot move the parameters, so they must still be the file's
    tuned = tmp_path / "tuned"
    result = runner.invoke(app, ["train", "--dataset", "custom", "--data-root", str(dataset), "--out", str(tuned),
                                 "--init-weights", str(first / "weights.pt"), "--lr", "0", "--max-steps", "1",
                                 "--crop-size", "64", "--batch-size", "2", "--workers", "0", "--val-fraction", "0",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = _state(tuned / "latest.pt")
    assert state["step"] == 1 and state["config"]["init_weights"] == str(first / "weights.pt")
    from dbcli.models import DBNet, ModelConfig

    params = [name for name, _ in DBNet(ModelConfig()).named_parameters()]
    assert all(torch.equal(state["model_state"][k].half(), start[k]) for k in params)
    torch.manual_seed(0)  # (the file is not what the run's seed would have initialised anyway)
    fresh = DBNet(ModelConfig()).state_dict()
    assert sum(not torch.equal(fresh[k].half(), start[k]) for k in params) > len(params) // 2
    assert "starting from the weights in" in (tuned / "train.log").read_text()

    # the file's architecture must be the one asked for; both starting points at once are refused
    for extra, message in ((["--arch", "resnet34"], "a resnet18 model, not the resnet34 asked for"),
                           (["--pretrained-backbone", str(first / "weights.pt")], "pass one")):
        bad = runner.invoke(app, ["train", "--dataset", "custom", "--data-root", str(tmp_path / "no-such-data"),
                                  "--out", str(tmp_path / "bad"), "--init-weights", str(first / "weights.pt"),
                                  "--device", "cpu", *extra])
        assert bad.exit_code != 0 and message in bad.output, bad.output
        assert "Traceback" not in bad.output
    missing = runner.invoke(app, ["train", "--dataset", "custom", "--data-root", str(dataset), "--out",
                                  str(tmp_path / "bad"), "--init-weights", str(tmp_path / "none.pt"),
                                  "--device", "cpu"])
    assert missing.exit_code != 0 and "none.pt: weights file not found" in missing.output


def test_validation_thresholds_come_from_the_options_then_init_weights_then_the_run(dataset, tmp_path):
    """A fine-tuning run validates (and stores in its weights) the --init-weights file's thresholds
    unless --thresh / --box-thresh say otherwise; --resume keeps the run's unless told; a plain new
    run uses thresh 0.3 / box_thresh 0.6."""
    first = tmp_path / "first"
    train(small_config(dataset, first, max_steps=1, val_fraction=0.0))
    assert _state(first / "latest.pt")["config"]["post"]["thresh"] == 0.3
    assert load_weights(first / "weights.pt")["postprocess"]["box_thresh"] == 0.6
    tuned_file = tmp_path / "tuned.pt"  # a released file carries thresholds picked for it
    weights = load_weights(first / "weights.pt")
    weights["postprocess"].update(thresh=0.45, box_thresh=0.7)
    torch.save(weights, tuned_file)

    common = ["train", "--dataset", "custom", "--data-root", str(dataset), "--crop-size", "64", "--batch-size",
              "2", "--workers", "0", "--val-fraction", "0.25", "--val-short-side", "64", "--val-every", "1", "--epochs",
              "2", "--max-steps", "2", "--device", "cpu", "--init-weights", str(tuned_file)]
    for run, extra, expected in ((tmp_path / "inherit", [], (0.45, 0.7)),
                                 (tmp_path / "override", ["--box-thresh", "0.5"], (0.45, 0.5))):
        result = runner.invoke(app, [*common, "--out", str(run), *extra])
        assert result.exit_code == 0, result.output
        post = load_weights(run / "weights.pt")["postprocess"]
        assert (post["thresh"], post["box_thresh"]) == expected
        assert f"(thresh {expected[0]:g}, box_thresh {expected[1]:g})" in (run / "train.log").read_text()

    run = tmp_path / "inherit"
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "1", "--workers", "0",
                                  "--device", "cpu", "--thresh", "0.2"])
    assert resumed.exit_code == 0, resumed.output
    config = _state(run / "latest.pt")["config"]
    assert (config["post"]["thresh"], config["post"]["box_thresh"]) == (0.2, 0.7)
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "bad"), "--thresh", "1.5"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_warmup_raises_the_lr_linearly_then_hands_over_to_poly(dataset, tmp_path):
    """--warmup-steps N: step k (0-based) trains at lr * (k + 1) / N * poly(k) for k < N, then at the
    plain poly lr; without it the first step already runs at the full lr."""
    assert [schedule.warmup_factor(k, 4) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert schedule.warmup_factor(0, 0) == 1.0

    def logged_lrs(out: Path) -> list[float]:
        lines = [line for line in (out / "train.log").read_text().splitlines() if " step " in line]
        return [float(line.split(" lr ")[1].split()[0]) for line in lines]

    for warmup in (4, 0):
        out = tmp_path / f"warm{warmup}"
        train(small_config(dataset, out, lr=0.01, epochs=100, max_steps=6, val_fraction=0.0, warmup_steps=warmup))
        total = 100 * 2  # 5 images, batch 2, the last partial batch dropped: 2 steps per epoch
        expected = [schedule.poly_lr(0.01, k / (total + 1), 0.9) * schedule.warmup_factor(k, warmup)
                    for k in range(6)]
        assert logged_lrs(out) == pytest.approx(expected, abs=1e-5)
    assert logged_lrs(tmp_path / "warm4")[0] == pytest.approx(0.0025, abs=1e-5)


def test_fine_tuning_a_mobilenet_v3_file_keeps_its_architecture_and_input_order(dataset, tmp_path):
    """--init-weights without --arch takes the file's architecture (here a PP-OCR-style BGR
    DB-MobileNetV3); --resume of that run rebuilds the same model, input convention included."""
    from dbcli.models import DBNet, ModelConfig
    from dbcli.weights import save_weights

    torch.manual_seed(0)
    source = tmp_path / "mv3.pt"
    save_weights(source, DBNet(ModelConfig("mobilenet_v3", input_order="bgr")), half=False)
    run = tmp_path / "run"
    args = ["train", "--dataset", "custom", "--data-root", str(dataset), "--out", str(run), "--init-weights",
            str(source), "--optimizer", "adamw", "--lr", "1e-4", "--max-steps", "1", "--crop-size", "64",
            "--batch-size", "2", "--workers", "0", "--val-fraction", "0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _state(run / "latest.pt")["config"]["arch"] == "mobilenet_v3"
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "1", "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    state = _state(run / "latest.pt")
    assert state["step"] == 2
    assert load_weights(run / "weights.pt")["model"] == ModelConfig("mobilenet_v3", input_order="bgr").to_dict()
    bad = runner.invoke(app, [*args[:-2], "--device", "cpu", "--arch", "resnet18"])
    assert bad.exit_code != 0 and "a mobilenet_v3 model, not the resnet18 asked for" in bad.output


def test_cli_train_defaults_are_train_config_defaults():
    """`dbnet train`'s option defaults are TrainConfig's (one place decides them)."""
    import dataclasses
    import inspect

    from typer.models import OptionInfo

    from dbcli.commands.train import train as train_command

    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(TrainConfig)}
    options = {name: p.default.default if isinstance(p.default, OptionInfo) else p.default
               for name, p in inspect.signature(train_command).parameters.items()}
    shared = set(options) & set(defaults)
    assert len(shared) >= 25  # every option but --thresh / --box-thresh (TrainConfig.post) is a field
    assert {name: options[name] for name in shared} == {name: defaults[name] for name in shared}
    assert set(options) - shared == {"thresh", "box_thresh", "context"}  # (context: which options were given)


def _signalling_step(monkeypatch, at_step: int, action):
    """``_train_step`` that runs ``action`` after optimizer step ``at_step`` of the run."""
    real = train_module._train_step

    def step(run, state, batch, head_only):
        parts = real(run, state, batch, head_only)
        if state.step == at_step:
            action()
        return parts

    monkeypatch.setattr(train_module, "_train_step", step)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_says_how_to_resume(dataset, tmp_path, monkeypatch):
    """SIGTERM (a scheduler's stop) during step 1 of an epoch of 2: the run ends after that step,
    writes latest.pt (resumable mid-epoch) and weights.pt, exits 143 and its last line, on stderr and
    in train.log, gives the command that continues it; that command continues at step 1."""
    import os
    import signal

    run = tmp_path / "run"
    _signalling_step(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
    args = ["train", "--dataset", "custom", "--data-root", str(dataset), "--out", str(run), "--epochs", "3",
            "--crop-size", "64", "--batch-size", "2", "--workers", "0", "--val-fraction", "0", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 143, result.output
    assert f"training stopped by SIGTERM at step 1; {run / 'latest.pt'} holds the run" in result.stderr
    assert f"continue with: dbnet train --resume {run}" in result.stderr
    assert f"dbnet train --resume {run}" in (run / "train.log").read_text().splitlines()[-1]
    assert _state(run / "latest.pt")["step"] == 1 and (run / "weights.pt").is_file()
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--max-steps", "1", "--workers", "0",
                                  "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    assert _state(run / "latest.pt")["step"] == 2


def test_ctrl_c_keeps_the_last_checkpoint_and_says_so(dataset, tmp_path, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt

    run = tmp_path / "run"
    _signalling_step(monkeypatch, 3, interrupt)  # in epoch 2: epoch 1's latest.pt is kept
    with pytest.raises(DBNetError, match=r"training interrupted at step 3; .*latest\.pt holds the run .*"
                                         r"--resume") as info:
        train(small_config(dataset, run, epochs=3, val_fraction=0))
    assert info.value.exit_code == 130 and _state(run / "latest.pt")["step"] == 2
