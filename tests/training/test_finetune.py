"""Fine-tuning (``dbnet train --init-weights``): the start is validated before the first step,
``weights.pt`` is the best of {start, checkpoints} and says which, the threshold-branch warm-up
leaves the rest of the model as it was, thresholds are re-picked on the validation split, and the
recipe fills only the options not given. Tiny synthetic data (dark rectangles), CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from generated_files import runner
from planted_model import rect_image, save_planted
from train_data import small_config

import dbcli.training.validation as validation
from dbcli.cli import app
from dbcli.models import DBNet, ModelConfig
from dbcli.training.config import TrainConfig
from dbcli.training.loop import train
from dbcli.training.recipe import RECIPE, apply_recipe, default_given, threshold_branch_is_copy
from dbcli.training.selection import hmean_se, noise_line, paired_difference_se
from dbcli.weights import load_weights, save_weights


def make_rect_dataset(root: Path, count: int = 10, seed: int = 3) -> Path:
    """``count`` 192x128 images with 2-3 dark rectangles each (what the planted model finds), as a custom
    JSONL dataset."""
    import cv2

    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        rects = []
        for k in range(int(rng.integers(2, 4))):
            x0, y0 = int(rng.integers(8, 80)), 10 + 38 * k
            rects.append((x0, y0, x0 + int(rng.integers(40, 100)), y0 + int(rng.integers(14, 26))))
        cv2.imwrite(str(root / f"r{i}.png"), cv2.cvtColor(rect_image(192, 128, rects), cv2.COLOR_RGB2BGR))
        polygons = [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, y0, x1, y1 in rects]
        lines.append(json.dumps({"image": f"r{i}.png", "polygons": polygons}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_rect_dataset(tmp_path_factory.mktemp("data"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: torch on one thread


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same(a: dict, b: dict, keys) -> bool:
    """Equal tensors under ``keys`` (compared in fp16, the precision of weights.pt)."""
    return all(torch.equal(a[k].half(), b[k].half()) if a[k].is_floating_point() else torch.equal(a[k], b[k])
               for k in keys)


TIGHT = {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 0.3}  # the planted map covers the rectangles exactly


def finetune_config(data: Path, out: Path, start: Path, **overrides) -> TrainConfig:
    base = dict(init_weights=str(start), val_fraction=0.4, val_short_side=128, head_warmup_steps=0,
                pick_thresholds=False)
    return small_config(data, out, **{**base, **overrides})


def test_a_start_that_training_makes_worse_is_what_weights_pt_holds(dataset, tmp_path):
    """A planted start that finds the rectangles, fine-tuned with a destructive lr: the start
    is validated and logged, every checkpoint scores below it, and weights.pt holds the start's
    weights with metadata saying so."""
    start = save_planted(tmp_path / "planted.pt", postprocess=TIGHT)
    run = tmp_path / "run"
    train(finetune_config(dataset, run, start, optimizer="sgd", lr=50.0, epochs=2, batch_size=2))
    records = _records(run)
    assert records[0]["epoch"] == 0 and records[0]["step"] == 0
    start_hmean = records[0]["val_hmean"]
    assert start_hmean > 0.5  # the planted model finds the dark rectangles
    later = [r["val_hmean"] for r in records[1:] if "val_hmean" in r]
    assert later and max(later) < start_hmean
    log = (run / "train.log").read_text()
    assert "the start (before the first step): val" in log and "epoch 0" not in log
    assert "validation split: 4 images" in log
    assert "weights.pt = the start" in log and "no checkpoint beat it" in log
    saved, planted = load_weights(run / "weights.pt"), load_weights(start)
    assert _same(saved["state_dict"], planted["state_dict"], planted["state_dict"])
    assert saved["metrics"]["selected"]["which"] == "the start"
    assert saved["metrics"]["selected"]["val_hmean"] == pytest.approx(start_hmean)
    assert saved["train"]["selected"].startswith("weights.pt = the start")
    last = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)["model_state"]
    assert not _same(saved["state_dict"], last, planted["state_dict"])  # training did move the weights


def test_a_checkpoint_that_beats_the_start_is_kept_not_the_last_one(dataset, tmp_path, monkeypatch):
    """Validation figures scripted (start 0.5, then 0.8, 0.6; 6 training images, 3 steps an
    epoch): weights.pt is the epoch-1 checkpoint
    (as best.pt holds it), neither the start nor the last weights, and says so."""
    scripted = iter([0.5, 0.8, 0.6])

    def fake_validate(*args, **kwargs) -> dict:
        hmean = next(scripted)
        return {"precision": hmean, "recall": hmean, "hmean": hmean, "num_gt": 4, "num_det": 4, "num_matched": 2,
                "num_images": 4, "capped_images": 0, "image_counts": [[1, 1, 1]] * 4}

    monkeypatch.setattr(validation, "validate", fake_validate)
    start = tmp_path / "start.pt"
    torch.manual_seed(1)
    save_weights(start, DBNet(ModelConfig()), half=False)
    run = tmp_path / "run"
    train(finetune_config(dataset, run, start, optimizer="adamw", lr=1e-3, epochs=2, batch_size=2))
    assert [r.get("val_hmean") for r in _records(run)] == [0.5, 0.8, 0.6]
    saved = load_weights(run / "weights.pt")
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)["model_state"]
    assert best["epoch"] == 1
    params = [k for k in saved["state_dict"] if k.endswith("weight")]
    assert _same(saved["state_dict"], best["model_state"], params)
    assert not _same(saved["state_dict"], last, params)
    assert not _same(saved["state_dict"], load_weights(start)["state_dict"], params)
    assert saved["metrics"]["selected"]["which"] == "the checkpoint of epoch 1, step 3"
    assert "weights.pt = the checkpoint of epoch 1, step 3 (val hmean 0.800; the start 0.500" in (
        run / "train.log").read_text()


def test_candidates_are_compared_at_their_own_best_thresholds(dataset, tmp_path, monkeypatch):
    """Scripted sweeps: the epoch-1 checkpoint scores below the start at the run's thresholds (0.3 vs
    0.5) but above it at its own best pair (0.8 at 0.5 / 0.65; the start's best is 0.55), the epoch-2
    one 0.6 at both: weights.pt is the epoch-1 checkpoint with the thresholds it was judged at."""
    def row(thresh: float, box_thresh: float, hmean: float) -> dict:
        return {"thresh": thresh, "box_thresh": box_thresh, "precision": hmean, "recall": hmean, "hmean": hmean,
                "num_gt": 4, "num_det": 4, "num_matched": 2, "num_images": 4, "image_counts": [[1, 1, 1]] * 4}

    scripted = iter([(0.5, row(0.4, 0.6, 0.55)), (0.3, row(0.5, 0.65, 0.8)), (0.6, row(0.3, 0.6, 0.6))])

    def fake_pick(model, samples, images, device, short_side, post, amp_dtype) -> dict:
        current, best = next(scripted)
        return {**best, "current": row(post.thresh, post.box_thresh, current), "seconds": 0.0}

    monkeypatch.setattr(validation, "pick_thresholds", fake_pick)
    start = tmp_path / "start.pt"
    torch.manual_seed(1)
    save_weights(start, DBNet(ModelConfig()), half=False, postprocess={"thresh": 0.3, "box_thresh": 0.6})
    run = tmp_path / "run"
    train(finetune_config(dataset, run, start, optimizer="adamw", lr=1e-3, epochs=2, batch_size=2,
                          pick_thresholds=True))
    records = _records(run)
    assert [r.get("val_hmean") for r in records] == [0.5, 0.3, 0.6]
    assert [r.get("val_picked_hmean") for r in records] == [0.55, 0.8, 0.6]
    saved = load_weights(run / "weights.pt")
    best = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 1
    params = [k for k in saved["state_dict"] if k.endswith("weight")]
    assert _same(saved["state_dict"], best["model_state"], params)
    assert (saved["postprocess"]["thresh"], saved["postprocess"]["box_thresh"]) == (0.5, 0.65)
    assert saved["metrics"]["selected"]["which"] == "the checkpoint of epoch 1, step 3"
    log = (run / "train.log").read_text()
    assert "at its best thresholds on this split (0.5 / 0.65): P 0.800 R 0.800 hmean 0.800" in log
    assert "(val hmean 0.800; the start 0.550" in log and "each at its best thresholds" in log
    assert "thresholds re-picked on the validation split: thresh 0.5, box_thresh 0.65 (val hmean 0.800; " \
           "0.300 at 0.3 / 0.6)" in log


def test_threshold_branch_warm_up_leaves_everything_else_unchanged(dataset, tmp_path):
    """A converted-style file (threshold head = a copy of the probability head): the recipe gives it a
    threshold-branch warm-up, during which every other parameter and BatchNorm statistic stays the
    file's while the threshold head trains."""
    torch.manual_seed(2)
    model = DBNet(ModelConfig())
    model.thresh_head.load_state_dict(model.prob_head.state_dict())
    start = save_weights(tmp_path / "converted.pt", model, half=False)
    weights = load_weights(start)
    assert threshold_branch_is_copy(weights)
    run = tmp_path / "run"
    config = small_config(dataset, run, init_weights=str(start), val_fraction=0.0, max_steps=2, crop_size=64,
                          batch_size=2)
    train(config, given=frozenset({"max_steps", "crop_size", "batch_size", "val_fraction", "init_weights"}))
    state = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)
    assert state["config"]["head_warmup_steps"] == 100 and state["head_steps"] == 2
    final = state["model_state"]
    others = [k for k in final if not k.startswith("thresh_head.")]
    head = [k for k in final if k.startswith("thresh_head.") and k.endswith("weight")]
    assert others and _same(final, weights["state_dict"], others)  # parameters and running statistics
    assert not _same(final, weights["state_dict"], head)
    # the heads differ once trained: no warm-up for such a file
    trained = load_weights(run / "weights.pt")
    assert not threshold_branch_is_copy(trained)
    assert apply_recipe(TrainConfig(init_weights="x"), trained, frozenset()).head_warmup_steps == 0


def test_reset_threshold_branch_starts_as_a_constant_map_that_can_learn(dataset, tmp_path):
    """A threshold head that copies the probability head outputs the saturated probability map, so the
    binary map is 0.5 everywhere and the head's gradients vanish; reset, it outputs the inference
    threshold at every pixel, the binary map is the probability map binarised there, and the threshold
    loss moves its head with a gradient many times larger."""
    from dbcli.training.finetune import reset_thresh_branch
    from dbcli.training.losses import LossConfig, db_loss

    torch.manual_seed(4)
    model = DBNet(ModelConfig()).train()
    model.thresh_head.load_state_dict(model.prob_head.state_dict())
    image = torch.randn(2, 3, 64, 64)
    target = torch.rand(2, 64, 64) * 0.4 + 0.3  # threshold labels live in [0.3, 0.7]
    batch = {"gt": (torch.rand(2, 64, 64) > 0.8).float(), "mask": torch.ones(2, 64, 64),
             "thresh_map": target, "thresh_mask": torch.ones(2, 64, 64)}

    def head_grad() -> tuple[dict, float]:
        model.zero_grad()
        out = model(image)
        db_loss(out, batch, LossConfig())["loss_thresh"].backward()
        return out, float(model.thresh_head.body[-1].bias.grad.abs())  # how fast the map's level moves

    copy_out, copy_grad = head_grad()
    assert torch.allclose(copy_out["thresh"], copy_out["prob"])
    reset_thresh_branch(model, 0.3)
    out, reset_grad = head_grad()
    assert torch.allclose(out["thresh"], torch.full_like(out["thresh"], 0.3), atol=1e-6)
    assert torch.allclose(out["binary"], torch.sigmoid(50 * (out["prob"] - 0.3)), atol=1e-5)
    assert reset_grad > 5 * copy_grad

    # the recipe resets a converted-style file's branch at the run's thresh, and says so; not a trained one's
    model.thresh_head.load_state_dict(model.prob_head.state_dict())
    start = save_weights(tmp_path / "converted.pt", model, half=False)
    run = tmp_path / "run"
    config = small_config(dataset, run, init_weights=str(start), val_fraction=0.0, max_steps=1, crop_size=64,
                          batch_size=2, head_warmup_steps=0, lr=0.0)
    train(config, given=frozenset({"max_steps", "crop_size", "batch_size", "val_fraction", "init_weights",
                                   "head_warmup_steps", "lr"}))
    state = torch.load(run / "latest.pt", map_location="cpu", weights_only=True)
    assert state["config"]["reset_thresh_branch"] is True
    assert not state["model_state"]["thresh_head.body.6.weight"].any()  # lr 0: still the reset head
    assert "threshold branch reset to a constant map at 0.3" in (run / "train.log").read_text()
    assert apply_recipe(TrainConfig(init_weights="x"), load_weights(save_planted(tmp_path / "p.pt")),
                        frozenset()).reset_thresh_branch is False


def test_thresholds_are_re_picked_on_the_validation_split_and_stored(dataset, tmp_path):
    """A start whose stored thresh is too high for its map (0.995: nothing found) and no training (lr 0):
    the sweep on the validation split finds a better pair, stores it in weights.pt's postprocess and says it."""
    start = save_planted(tmp_path / "planted.pt", postprocess={**TIGHT, "thresh": 0.995})
    run = tmp_path / "run"
    train(finetune_config(dataset, run, start, lr=0.0, max_steps=1, pick_thresholds=True))
    saved = load_weights(run / "weights.pt")
    picked = saved["metrics"]["selected"]["thresholds"]
    assert (saved["postprocess"]["thresh"], saved["postprocess"]["box_thresh"]) == (picked["thresh"],
                                                                                  picked["box_thresh"])
    assert picked["thresh"] != 0.995
    start_hmean = _records(run)[0]["val_hmean"]
    assert picked["hmean"] > start_hmean
    assert "thresholds re-picked on the validation split" in (run / "train.log").read_text()


def test_cli_recipe_fills_only_the_options_not_given(dataset, tmp_path):
    """`dbnet train --init-weights F --lr X`: the recipe's other settings, the given lr; --no-recipe
    keeps the paper's defaults; no --init-weights, no recipe."""
    start = save_planted(tmp_path / "planted.pt")
    common = ["train", "--dataset", "custom", "--data-root", str(dataset), "--max-steps", "1", "--workers", "0",
              "--device", "cpu", "--val-fraction", "0", "--crop-size", "64", "--batch-size", "2"]
    for name, extra in (("recipe", ["--init-weights", str(start), "--lr", "0.002"]),
                        ("norecipe", ["--init-weights", str(start), "--no-recipe"]),
                        ("scratch", [])):
        result = runner.invoke(app, [*common, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    configs = {name: json.loads((tmp_path / name / "config.json").read_text()) for name in
               ("recipe", "norecipe", "scratch")}
    recipe = configs["recipe"]
    assert recipe["recipe"] and recipe["lr"] == 0.002 and recipe["crop_size"] == 64
    assert recipe["optimizer"] == RECIPE["optimizer"] and recipe["warmup_steps"] == RECIPE["warmup_steps"]
    assert recipe["scale_reference"] == recipe["val_short_side"] and recipe["pick_thresholds"]
    assert recipe["head_warmup_steps"] == 0  # the planted file's heads differ
    for name in ("norecipe", "scratch"):
        assert not configs[name]["recipe"] and configs[name]["optimizer"] == TrainConfig.optimizer
        assert configs[name]["lr"] == TrainConfig.lr and configs[name]["scale_reference"] == 0
    assert default_given(TrainConfig(lr=0.5, init_weights="x")) == {"lr", "init_weights"}
    given_thresh = apply_recipe(TrainConfig(init_weights="x", post={"thresh": 0.4}), {}, frozenset())
    assert given_thresh.pick_thresholds is False


def test_noise_figures():
    """Bootstrap errors: none for identical images, larger for a split of mixed images than for the
    paired difference of two models that differ on one image; a small split is flagged."""
    perfect = np.array([[3, 3, 3]] * 10)
    assert hmean_se(perfect) == 0.0 and paired_difference_se(perfect, perfect) == 0.0
    rng = np.random.default_rng(0)
    gt = rng.integers(1, 10, 60)
    mixed = np.stack([gt, gt, rng.integers(0, gt + 1)], axis=1)
    other = mixed.copy()
    other[0, 2] = other[0, 0]
    assert 0 < paired_difference_se(mixed, other) < hmean_se(mixed)
    line, noisy = noise_line(mixed[:8])
    assert noisy and line.startswith("warning: validation split: 8 images")
