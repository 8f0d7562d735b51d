"""Validation and the choice of a run's weights. Measuring a model on the held-out samples: its
P / R / hmean at the run's thresholds (``validate``, through the engine of ``dbnet detect``) or swept
over thresh x box_thresh (``pick_thresholds``). During a run: each validation's figures, log line and
``best.pt`` (``validate_and_keep_best``); a fine-tuning run's candidates (its start and its validated
checkpoints), of which ``weights.pt`` takes the best (``select_final``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from dbcli.data.datasets import Sample
from dbcli.models import DBNet
from dbcli.postprocess.boxes import PostConfig
from dbcli.progress import plural
from dbcli.training.checkpoints import save_checkpoint, torch_load_checkpoint
from dbcli.training.selection import image_counts, noise_line, selection_message
from dbcli.training.state import Run, RunState

THRESH_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
BOX_THRESH_GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)


def validate(model: DBNet, samples: list[Sample], images: list[np.ndarray] | None, device: torch.device,
             short_side: int, post: PostConfig, amp_dtype) -> dict:
    """P/R/hmean on held-out samples (ICDAR 2015 protocol, ``dbcli.evaluation.scoring.evaluate_model``)
    at ``short_side``, and ``capped_images``: how many had more candidate regions than
    ``post.max_candidates`` (an undertrained model's noisy map; said by the caller in its log, never
    as a raw Python warning), and ``image_counts``: (ground truth, detections, matched) per image,
    for the noise figures of ``dbcli.training.selection``. ``images``: the samples' images already
    decoded, else the files are read."""
    from dbcli.backends.torch_backend import ModuleBackend
    from dbcli.engine.settings import Settings
    from dbcli.evaluation.scoring import evaluate_model

    def warn(message: str) -> None:  # (only without the in-memory cache, which skips them up front)
        print(f"warning: validation: {message}", file=sys.stderr)

    model.eval()
    result = evaluate_model(samples, ModuleBackend(model, device, amp_dtype), images=images, warn=warn,
                            settings=Settings(short_side=short_side, post=post))
    model.train()
    return {**result.scores.to_dict(), "capped_images": result.capped,
            "image_counts": image_counts(result.images).tolist()}


def pick_thresholds(model: DBNet, samples: Sequence[Sample], images: Sequence[np.ndarray] | None,
                    device: torch.device, short_side: int, post: PostConfig, amp_dtype) -> dict:
    """Sweep thresh x box_thresh (``THRESH_GRID`` x ``BOX_THRESH_GRID``, plus ``post``'s own pair) on
    the validation ``samples`` with the network run once per image; returns the sweep's best row
    (``thresh``, ``box_thresh``, ``hmean``, ...) and the row at ``post``'s pair under ``"current"``,
    each with ``image_counts`` (ground truth, detections, matched per image: see
    ``dbcli.training.selection``)."""
    from dbcli.backends.torch_backend import ModuleBackend
    from dbcli.engine.settings import Settings
    from dbcli.evaluation.scoring import iter_prob_maps
    from dbcli.evaluation.sweep import sweep_maps

    threshes = sorted({*THRESH_GRID, post.thresh})
    box_threshes = sorted({*BOX_THRESH_GRID, post.box_thresh})
    model.eval()
    try:
        maps = iter_prob_maps(samples, ModuleBackend(model, device, amp_dtype), images=images,
                              settings=Settings(short_side=short_side, post=post))
        result = sweep_maps(((s.polygons, s.ignore, prob, w, h) for s, prob, _, _, (h, w) in maps),
                            box_threshes=box_threshes, threshes=threshes, post=post)
    finally:
        model.train()
    def with_counts(row: dict) -> dict:
        return {**row, "image_counts": image_counts(result.matches[(row["thresh"], row["box_thresh"])]).tolist()}

    current = next(r for r in result.rows if r["thresh"] == post.thresh and r["box_thresh"] == post.box_thresh)
    best = result.best if result.best["hmean"] > current["hmean"] else current  # ties: keep the run's pair
    return {**with_counts(best), "current": with_counts(current), "seconds": result.seconds}


def picked_post(post: PostConfig, picked: dict) -> PostConfig:
    """``post`` at the ``thresh`` / ``box_thresh`` pair a sweep picked (``pick_thresholds``'s row)."""
    return replace(post, thresh=float(picked["thresh"]), box_thresh=float(picked["box_thresh"]))


def _measure_validation(run: Run) -> tuple[dict, dict | None]:
    """The validation figures at the run's thresholds (with ``image_counts``), and with
    ``--pick-thresholds`` in a fine-tuning run the sweep's best pair (``pick_thresholds``'s row), at
    which each candidate is judged; else None."""
    config = run.config
    if config.init_weights and config.pick_thresholds:
        picked = pick_thresholds(run.model, run.val_samples, run.val_images, run.device, config.val_short_side,
                                 run.post, run.amp_dtype)
        return {k: v for k, v in picked["current"].items() if k not in ("thresh", "box_thresh")}, picked
    return validate(run.model, run.val_samples, run.val_images, run.device, config.val_short_side, run.post,
                    run.amp_dtype), None


def _log_validation(run: Run, name: str, last_val: dict, picked: dict | None) -> None:
    post = run.post
    line = (f"{name}: val P {last_val['precision']:.3f} R {last_val['recall']:.3f} "
            f"hmean {last_val['hmean']:.3f} (thresh {post.thresh:g}, box_thresh {post.box_thresh:g})")
    if picked is not None:
        line += (f"; at its best thresholds on this split ({picked['thresh']:g} / {picked['box_thresh']:g}): "
                 f"P {picked['precision']:.3f} R {picked['recall']:.3f} hmean {picked['hmean']:.3f}")
    run.log(line)
    if last_val.get("capped_images"):
        run.log(f"{name}: {plural(last_val['capped_images'], 'validation image')} had more than "
                f"{post.max_candidates} candidate regions (a noisy probability map, usual early in "
                f"training); only the first {post.max_candidates} were scored")


def _selection_entry(state: RunState, epoch: int, counts: dict, picked: dict | None) -> dict:
    """One candidate for ``weights.pt``: its hmean (at its best thresholds when ``picked``), per-image
    counts and label."""
    entry = {"hmean": counts["hmean"], "counts": counts["image_counts"], "step": state.step,
             "label": "the start" if epoch < 0 else
             f"the checkpoint of epoch {epoch + 1}{'' if state.finished_epoch > epoch else ' (partial)'}, "
             f"step {state.step}"}
    if picked is not None:
        entry.update(hmean=picked["hmean"], counts=picked["image_counts"], current_hmean=counts["hmean"],
                     thresholds={k: picked[k] for k in ("thresh", "box_thresh", "precision", "recall", "hmean")})
    return entry


def _add_candidate(run: Run, state: RunState, epoch: int, entry: dict) -> None:
    """A fine-tuning run's record of the start (``epoch`` -1), its best checkpoint and the best of all."""
    if epoch < 0:
        state.selection = {"start": entry, "best": entry}
        line, _ = noise_line(np.asarray(entry["counts"], np.int64).reshape(-1, 3))
        run.log(line)
    elif state.selection:
        if entry["hmean"] > state.selection.get("checkpoint", {}).get("hmean", -1.0):
            state.selection["checkpoint"] = entry
        if entry["hmean"] > state.selection["best"]["hmean"]:
            state.selection["best"] = entry


def validate_and_keep_best(run: Run, state: RunState, epoch: int, record: dict) -> None:
    """Validate after ``epoch`` (main process; ``epoch`` -1: the starting weights, before the first
    step), add the figures to ``record`` and write ``best.pt`` when the hmean is the best so far (a
    fine-tuning run's start included, so a checkpoint must beat it to be kept)."""
    t_val = time.time()
    counts, picked = _measure_validation(run)
    state.last_val = {k: v for k, v in counts.items() if k != "image_counts"}
    record.update({f"val_{k}": v for k, v in state.last_val.items()}, val_s=time.time() - t_val)
    if picked is not None:
        record.update(val_picked_hmean=picked["hmean"], val_picked_thresh=picked["thresh"],
                      val_picked_box_thresh=picked["box_thresh"])
    _log_validation(run, "the start (before the first step)" if epoch < 0 else f"epoch {epoch + 1}", state.last_val,
                    picked)
    entry = _selection_entry(state, epoch, counts, picked)
    if run.config.init_weights:
        _add_candidate(run, state, epoch, entry)
    if entry["hmean"] > state.best_hmean:
        state.best_hmean = entry["hmean"]
        save_checkpoint(run, state, run.out / "best.pt", state.finished_epoch, state.last_val)


def select_final(run: Run, state: RunState) -> dict:
    """A fine-tuning run's choice: the best of {start, validated checkpoints} on validation (loaded
    into ``run.model`` from ``best.pt``), then its thresholds re-picked there (``--pick-thresholds``:
    ``run.post`` updated). Returns the ``selected`` metadata of ``weights.pt`` (empty: no choice made)."""
    config, selection = run.config, state.selection
    if not (config.init_weights and selection and (run.out / "best.pt").is_file()):
        return {}
    best = selection["best"]
    if best["step"] != state.step:  # the model in memory is not the chosen one
        run.model.load_state_dict(torch_load_checkpoint(run.out / "best.pt")["model_state"])
    message = selection_message(selection)
    run.log(message)
    chosen = {"which": best["label"], "step": best["step"], "val_hmean": best["hmean"],
              "start_val_hmean": selection["start"]["hmean"], "message": message,
              "val_images": len(best["counts"])}
    if config.pick_thresholds:
        if "thresholds" in best:  # picked when it was validated
            picked, current_hmean = best["thresholds"], best["current_hmean"]
        else:  # a run resumed from a checkpoint of an older version
            swept = pick_thresholds(run.model, run.val_samples, run.val_images, run.device, config.val_short_side,
                                    run.post, run.amp_dtype)
            picked = {k: swept[k] for k in ("thresh", "box_thresh", "precision", "recall", "hmean")}
            current_hmean = swept["current"]["hmean"]
        run.log(f"thresholds re-picked on the validation split: thresh {picked['thresh']:g}, box_thresh "
                f"{picked['box_thresh']:g} (val hmean {picked['hmean']:.3f}; {current_hmean:.3f} at "
                f"{run.post.thresh:g} / {run.post.box_thresh:g})")
        run.post = picked_post(run.post, picked)
        chosen["thresholds"] = picked
    return chosen
