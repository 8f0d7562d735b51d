"""``dbnet eval`` and ``dbcli.evaluation.scoring``: predictions files, model runs, threshold sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from generated_files import runner

from dbcli.cli import app
from dbcli.data.datasets import load_samples, split_holdout
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.evaluation import metrics
from dbcli.evaluation.scoring import evaluate_model, evaluate_predictions
from dbcli.evaluation.sweep import sweep_maps, sweep_model
from dbcli.imaging import MEAN, STD
from dbcli.postprocess.boxes import PostConfig, boxes_from_prob_map


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny inputs gain nothing from intra-op threads; oversubscribed threads (another process busy
    on the same cores) slow them down many times."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def write_custom(root: Path, split: str, records: list[tuple[str, np.ndarray, list, list]]) -> None:
    """Images (``(name, image, polygons, ignore)``) and ``<split>.jsonl`` in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, image, polygons, ignore in records:
        if image is not None:
            cv2.imwrite(str(root / name), image)
        lines.append(json.dumps({"image": name, "polygons": [
            {"points": np.asarray(p).tolist(), "ignore": bool(i)} for p, i in zip(polygons, ignore)]}))
    (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def gray(h: int, w: int, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# --- scoring a predictions file -------------------------------------------------------------------
def prediction_case(tmp_path: Path):
    gts = {
        "img0.png": ([rect(10, 10, 70, 30), rect(10, 50, 90, 70), rect(100, 10, 150, 40)], [False, False, True]),
        "img1.png": ([rect(20, 20, 80, 40)], [False]),
        "img2.png": ([rect(5, 5, 50, 20)], [False]),  # no predictions for this one
    }
    write_custom(tmp_path / "data", "test", [(n, gray(100, 160), p, i) for n, (p, i) in gts.items()])
    dets = {
        "img0.png": [(rect(12, 11, 69, 31), 0.9),  # matches gt 0
                     (rect(102, 12, 148, 38), 0.8),  # inside the don't-care region: dropped
                     (rect(100, 60, 140, 90), 0.4)],  # false positive (low score)
        "img1.png": [(rect(23, 22, 83, 41), 0.7),  # matches
                     (rect(20, 60, 60, 80), 0.45)],  # false positive (low score)
    }
    files = {"img0.png": "/elsewhere/img0.png",  # matched by file name
             "img1.png": "some/dir/img1.jpg"}  # matched by stem
    images = [{"file": files[n], "width": 160, "height": 100,
               "detections": [{"points": p.tolist(), "score": s} for p, s in d]} for n, d in dets.items()]
    images.append({"file": "other/unrelated.png", "width": 10, "height": 10, "detections": []})
    pred = tmp_path / "polygons.json"
    pred.write_text(json.dumps({"model": {"arch": "resnet18"}, "settings": {}, "images": images}))
    return gts, dets, pred


@pytest.mark.parametrize("box_thresh", [None, 0.5])
def test_eval_pred_equals_metrics(tmp_path, box_thresh):
    gts, dets, pred = prediction_case(tmp_path)
    direct = metrics.evaluate(
        (gt, ign, [p for p, s in dets.get(name, []) if box_thresh is None or s >= box_thresh])
        for name, (gt, ign) in gts.items())
    # hand count: 4 care ground-truth words, 2 matched; the det in the don't-care region is dropped
    assert (direct.num_gt, direct.num_matched) == (4, 2)
    assert direct.num_det == (4 if box_thresh is None else 2)
    out = tmp_path / "scores.json"
    args = ["eval", "--dataset", "custom", "--data-root", str(tmp_path / "data"), "--pred", str(pred),
            "--json", str(out)] + (["--box-thresh", str(box_thresh)] if box_thresh is not None else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for key, value in direct.to_dict().items():
        assert report[key] == pytest.approx(value), key
    assert [Path(m).name for m in report["missing_predictions"]] == ["img2.png"]
    assert report["unmatched_predictions"] == ["other/unrelated.png"]
    assert "img2.png" in result.output and "no predictions" in result.output  # warned, not silent
    assert f"{direct.hmean:.4f}" in result.output
    # the same predictions as dbnet detect --format jsonl (one image entry per line)
    jsonl = tmp_path / "polygons.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in json.loads(pred.read_text())["images"]))
    samples = load_samples("custom", tmp_path / "data", "test")
    assert evaluate_predictions(samples, jsonl, box_thresh).scores == direct
    # a --json that cannot be written: one line naming it, said before any image is scored
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    (tmp_path / "taken" / "eval.json").mkdir(parents=True)  # a folder gets eval.json: here a folder itself
    for given, where in ((blocker / "scores.json",) * 2, (tmp_path / "taken", tmp_path / "taken" / "eval.json")):
        bad = runner.invoke(app, [str(given) if a == str(out) else a for a in args])
        assert bad.exit_code != 0 and f"{where}: cannot write --json" in bad.output, bad.output
        assert "Traceback" not in bad.output and "hmean" not in bad.output


def test_eval_pred_bad_files(tmp_path):
    gts, _, pred = prediction_case(tmp_path)
    samples = load_samples("custom", tmp_path / "data", "test")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"file": "img0.png", "detections": [{"points": [[0, 0], [1, 1]]}]}]}))
    with pytest.raises(DBNetError, match=r"bad\.json: images\[0\]\.detections\[0\]"):
        evaluate_predictions(samples, bad)
    bad.write_text("{not json")
    with pytest.raises(DBNetError, match="not a JSON predictions file"):
        evaluate_predictions(samples, bad)
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"file": "img0.png", "detections": []}\n{"file": \n')
    with pytest.raises(DBNetError, match=r"bad\.jsonl:2: not a JSON line"):
        evaluate_predictions(samples, bad_lines)
    twice = json.loads(pred.read_text())
    twice["images"].append({"file": "again/img0.png", "detections": []})
    bad.write_text(json.dumps(twice))
    with pytest.raises(DBNetError, match="several predictions could be img0.png"):
        evaluate_predictions(samples, bad)
    result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path / "data"),
                                 "--pred", str(pred), "--thresh", "0.3"])
    assert result.exit_code == 1 and "--thresh does not apply" in result.output


# --- controlled probability maps ------------------------------------------------------------------
# Ground truth A and C; the map has A's shrunk region at 0.9, C's at 0.65, a false region B at 0.55
# and a 0.25 bridge between A and B. Best: thresh 0.3 (0.2 merges A and B through the bridge, 0.7
# loses C) and box_thresh 0.6 (0.5 keeps B, 0.7 loses C).
GT = [rect(10, 10, 70, 30), rect(120, 60, 180, 80)]
THRESHES = (0.2, 0.3, 0.7)
BOX_THRESHES = (0.4, 0.5, 0.6, 0.7, 0.8)


def controlled_map() -> np.ndarray:
    prob = np.zeros((96, 224), np.float32)
    prob[16:24, 16:64] = 0.9  # A
    prob[66:74, 126:174] = 0.65  # C
    prob[16:24, 100:148] = 0.55  # B, no ground truth
    prob[18:22, 64:100] = 0.25  # bridge A-B
    return prob


def test_sweep_maps_finds_the_best_setting():
    prob = controlled_map()
    result = sweep_maps([(GT, [False, False], prob, 224, 96)], BOX_THRESHES, THRESHES)
    assert (result.best["thresh"], result.best["box_thresh"]) == (0.3, 0.6)
    assert result.best["hmean"] == 1.0
    assert len(result.rows) == len(THRESHES) * len(BOX_THRESHES)
    # every row equals a full post-processing pass at that setting (the sweep filters one pass per
    # thresh by score instead)
    for row in result.rows:
        dets = boxes_from_prob_map(prob, 224, 96, PostConfig(thresh=row["thresh"], box_thresh=row["box_thresh"]))
        direct = metrics.evaluate([(GT, [False, False], [d.points for d in dets])])
        assert {k: row[k] for k in direct.to_dict()} == direct.to_dict(), row
    others = [r["hmean"] for r in result.rows if r is not result.best]
    assert max(others) < 1.0


def prob_image(prob: np.ndarray) -> np.ndarray:
    return np.repeat(np.round(prob * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def red_channel_prob(batch: np.ndarray) -> np.ndarray:
    """A stand-in network: the probability is the (de-normalised) first channel of the input."""
    return ((batch[:, 0] * STD[0] + MEAN[0]) / 255.0).astype(np.float32)


def test_sweep_and_evaluate_model_with_a_backend(tmp_path):
    prob = controlled_map()
    write_custom(tmp_path, "test", [(f"p{i}.png", prob_image(prob), GT, [False, False]) for i in range(3)]
                 + [("broken.png", None, GT, [False, False])])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    samples = load_samples("custom", tmp_path, "test")
    messages = []
    result = sweep_model(samples, red_channel_prob, settings=Settings(short_side=96, batch_size=2),
                         box_threshes=BOX_THRESHES, threshes=THRESHES, warn=messages.append)
    assert (result.best["thresh"], result.best["box_thresh"]) == (0.3, 0.6)
    assert result.best["num_images"] == 3 and result.best["hmean"] == 1.0
    assert [Path(p).name for p in result.skipped] == ["broken.png"]
    assert any("broken.png" in m for m in messages)  # reported, not silent
    at_best = evaluate_model(samples, red_channel_prob,
                             settings=Settings(96, post=PostConfig(thresh=0.3, box_thresh=0.6)))
    assert at_best.scores.hmean == 1.0 and at_best.scores.num_images == 3
    worse = evaluate_model(samples, red_channel_prob,
                           settings=Settings(96, post=PostConfig(thresh=0.3, box_thresh=0.5), batch_size=3))
    row = next(r for r in result.rows if (r["thresh"], r["box_thresh"]) == (0.3, 0.5))
    assert worse.scores.to_dict() == {k: row[k] for k in worse.scores.to_dict()}
    assert worse.scores.precision == pytest.approx(2 / 3)


# --- the CLI with a weights file ------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    import torch

    from dbcli.models import DBNet, ModelConfig
    from dbcli.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    save_weights(path, DBNet(ModelConfig("resnet18")), postprocess={"thresh": 0.3, "box_thresh": 0.6},
                 short_side=64, train={"config": {"dataset": "custom", "val_fraction": 0.5, "seed": 0}})
    return path


def test_eval_with_weights_writes_json(tmp_path, random_weights):
    records = [(f"im{i}.png", gray(64 + 16 * i, 96), [rect(10, 10, 60, 30)], [False]) for i in range(3)]
    write_custom(tmp_path, "test", records + [("bad.png", None, [rect(1, 1, 9, 9)], [False])])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out" / "eval.json"
    result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path), "--weights",
                                 str(random_weights), "--device", "cpu", "--box-thresh", "0.7",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["num_images"] == 3 and report["num_gt"] == 3
    assert [Path(p).name for p in report["skipped"]] == ["bad.png"] and "bad.png" in result.output
    settings = report["settings"]
    assert (settings["short_side"], settings["thresh"], settings["box_thresh"]) == (64, 0.3, 0.7)
    # random weights: no region's mean probability reaches box_thresh 0.7, so nothing is detected
    assert report["images_per_s"] > 0 and report["num_det"] == 0 and report["hmean"] == 0.0
    assert "precision" in result.output and "hmean" in result.output


def test_eval_precision_bf16_is_recorded(tmp_path, random_weights):
    records = [(f"im{i}.png", gray(64, 96), [rect(10, 10, 60, 30)], [False]) for i in range(2)]
    write_custom(tmp_path, "test", records)
    out = tmp_path / "eval.json"
    base = ["eval", "--dataset", "custom", "--data-root", str(tmp_path), "--weights", str(random_weights),
            "--device", "cpu"]
    result = runner.invoke(app, base + ["--precision", "bf16", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["dtype"] == "bf16" and 0 <= report["precision"] <= 1  # the metric keeps its name
    assert "bf16" in result.output
    result = runner.invoke(app, base + ["--precision", "fp16"])
    assert result.exit_code == 1 and "CUDA" in result.output
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"images": []}))
    result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path), "--pred", str(pred),
                                 "--precision", "bf16"])
    assert result.exit_code == 1 and "--precision" in result.output


def test_eval_sweep_refuses_test_split_and_uses_the_training_holdout(tmp_path, random_weights):
    records = [(f"t{i}.png", gray(64, 64), [rect(8, 8, 50, 24)], [False]) for i in range(4)]
    write_custom(tmp_path, "train", records)
    write_custom(tmp_path, "test", records[:1])
    base = ["eval", "--dataset", "custom", "--data-root", str(tmp_path), "--weights", str(random_weights),
            "--device", "cpu", "--sweep", "--sweep-thresh", "0.3", "--sweep-box-thresh", "0.5,0.6"]
    refused = runner.invoke(app, base)
    assert refused.exit_code == 1 and "--holdout-from-train" in refused.output
    refused = runner.invoke(app, base + ["--split", "test"])
    assert refused.exit_code == 1
    out = tmp_path / "sweep.json"
    result = runner.invoke(app, base + ["--holdout-from-train", "0.5", "--seed", "0", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    _, held_out = split_holdout(load_samples("custom", tmp_path, "train"), 0.5, 0)
    assert report["sweep"]["best"]["num_images"] == len(held_out) == 2
    assert len(report["sweep"]["rows"]) == 2 and "best: thresh 0.3" in result.output
    assert "overlap" not in result.output  # same fraction and seed as the weights' training run
    other_seed = runner.invoke(app, base + ["--holdout-from-train", "0.5", "--seed", "3"])
    assert other_seed.exit_code == 0 and "overlap" in other_seed.output
    allowed = runner.invoke(app, base + ["--allow-test-sweep"])
    assert allowed.exit_code == 0, allowed.output


def test_sweep_grid_option_parsing():
    from dbcli.evaluation.sweep import parse_grid

    grid = parse_grid("0.3:0.8:0.05", "sweep-box-thresh")
    assert len(grid) == 11 and grid[0] == 0.3 and grid[-1] == 0.8 and grid[5] == 0.55
    assert parse_grid("0.2, 0.25,0.3", "sweep-thresh") == (0.2, 0.25, 0.3)
    for bad in ("0.3:0.8", "a,b", "0.5:1.5:0.5", "0.8:0.3:0.1", ""):
        with pytest.raises(DBNetError):
            parse_grid(bad, "sweep-thresh")


def test_eval_onnx_weights_match_torch(tmp_path):
    """`dbnet eval --weights model.onnx` runs through onnxruntime and scores like the .pt."""
    from planted_model import planted_files, rect_image

    files = planted_files(tmp_path / "planted")
    boxes = [[(20, 30, 120, 60), (40, 100, 200, 130)], [(10, 10, 90, 40)], [(150, 60, 240, 90)]]
    records = []
    for i, rects in enumerate(boxes):
        polys = [rect(*r) for r in rects]
        records.append((f"p{i}.png", rect_image(256, 160, rects)[:, :, ::-1], polys, [False] * len(polys)))
    records[2][2].append(rect(20, 100, 60, 140))  # one ground-truth word the model cannot see: a miss
    records[2][3].append(False)
    write_custom(tmp_path, "test", records)
    reports = {}
    for kind in ("pt", "onnx"):
        out = tmp_path / f"{kind}.json"
        result = runner.invoke(app, ["eval", "--dataset", "custom", "--data-root", str(tmp_path), "--weights",
                                     str(files[kind]), "--device", "cpu", "--unclip-ratio", "0.1",
                                     "--json", str(out)])  # planted maps cover the rects: no unclip
        assert result.exit_code == 0, result.output
        reports[kind] = json.loads(out.read_text())
    for key in ("num_gt", "num_det", "num_matched", "precision", "recall", "hmean"):
        assert reports["pt"][key] == reports["onnx"][key], key
    assert reports["pt"]["num_gt"] == 5 and reports["pt"]["num_matched"] == 4, reports["pt"]
