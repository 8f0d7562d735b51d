"""Checkpoints: ``latest.pt`` / ``best.pt`` written atomically with everything ``--resume`` needs
(``save_checkpoint``; the RNGs' state included, so a resumed run is bit-exact), read back safely
(``load_checkpoint``, ``weights_only=True``) and restored into a run (``restore_state``); the final
``weights.pt`` (``save_final_weights``). A write that fails (a full disk) is one ``DBNetError`` line
saying what is intact (``write_failure``)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dbcli.errors import DBNetError
from dbcli.files import check_regular_file
from dbcli.outputs.atomic import atomic_torch_save
from dbcli.training.config import TrainConfig
from dbcli.training.state import Run, RunState
from dbcli.weights import make_weights, save_weights

CHECKPOINT_KEYS = ("config", "model_state", "optimizer", "scaler", "epoch", "step", "rng")


def torch_load_checkpoint(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain Python values only, so that a
    checkpoint from elsewhere cannot run code. Checkpoints written before the RNG state was stored
    as plain lists hold numpy's state as an array: those numpy types (and only those) are allowed."""
    check_regular_file(path, "checkpoint file", missing_ok=True)
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    with torch.serialization.safe_globals([reconstruct, *allowed]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(resume: str | Path) -> tuple[Path, dict]:
    """The checkpoint ``resume`` names (a run folder: its ``latest.pt``) and its contents. Raises
    ``DBNetError`` naming the file when it is missing, corrupt, not a checkpoint or holds objects
    other than tensors and plain values."""
    path = Path(resume)
    if path.is_dir():
        path = path / "latest.pt"
    if not path.is_file():
        raise DBNetError(f"{path}: no checkpoint to resume from")
    try:
        state = torch_load_checkpoint(path)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        if "Weights only load failed" in str(exc) or "weights_only" in str(exc):
            reason = "it holds objects other than tensors and plain values, which are not loaded"
        raise DBNetError(f"{path}: not a loadable dbnet checkpoint ({reason})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise DBNetError(f"{path}: not a dbnet training checkpoint (no {', '.join(missing)}); --resume "
                         "takes a run folder or its latest.pt / best.pt (for a weights file, use "
                         "--init-weights)")
    if not isinstance(state["config"], dict):
        raise DBNetError(f"{path}: not a dbnet training checkpoint (bad config entry)")
    return path, state


def saved_config(state: dict, path: Path) -> TrainConfig:
    """The ``TrainConfig`` stored in a checkpoint; ``DBNetError`` for settings this dbnet lacks."""
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(state["config"]) - known)
    if unknown:
        raise DBNetError(f"{path}: unknown training setting(s) {', '.join(unknown)} (a checkpoint from a "
                         "newer dbnet?)")
    return TrainConfig(**state["config"])


def rng_state() -> dict:
    """Every RNG's state in plain types and tensors (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Every RNG back to ``state`` (``rng_state``'s; CUDA's when both the checkpoint and this machine
    have it)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_state(run: Run, resume_state: dict | None) -> RunState:
    """The loop's state: a new run's, or the checkpoint's (model, optimizer, scaler and RNGs too)."""
    state = RunState(lr=run.config.lr)
    trained_before_s = 0.0  # training wall time of the earlier sessions of this run (--resume)
    if resume_state is not None:
        try:
            run.model.load_state_dict(resume_state["model_state"])
            run.optimizer.load_state_dict(resume_state["optimizer"])
            run.scaler.load_state_dict(resume_state["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise DBNetError(f"{run.config.resume}: the checkpoint does not match its own model settings "
                             f"({str(exc).splitlines()[0][:160]})") from None
        state.start_epoch, state.step = resume_state["epoch"], resume_state["step"]
        state.skip_batches = resume_state.get("epoch_batches", 0)
        state.best_hmean = resume_state.get("best_hmean", -1.0)
        state.selection = resume_state.get("selection", {})
        state.head_steps = int(resume_state.get("head_steps", 0))
        trained_before_s = float(resume_state.get("train_seconds", 0.0))
        set_rng_state(resume_state["rng"])
        run.log(f"resumed from {run.config.resume} at epoch {state.start_epoch}, step {state.step}"
                + (f" ({state.skip_batches} batches into the epoch)" if state.skip_batches else ""))
    state.start_step = state.step
    state.finished_epoch = state.start_epoch
    state.started = -trained_before_s  # made absolute by the loop when its clock starts
    return state


def save_checkpoint(run: Run, state: RunState, path: Path, epoch: int, metrics: dict | None = None,
                    epoch_batches: int = 0) -> None:
    """``latest.pt`` / ``best.pt``: everything ``--resume`` needs, and the weights (atomic write)."""
    config, post = run.config, run.post
    checkpoint = {"config": asdict(config), "model_state": run.model.state_dict(),
                  "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(), "epoch": epoch,
                  "step": state.step, "best_hmean": state.best_hmean, "epoch_batches": epoch_batches,
                  "train_seconds": time.time() - state.started, "rng": rng_state(),
                  "selection": state.selection, "head_steps": state.head_steps,
                  "weights": make_weights(run.model, half=False, postprocess=asdict(post),
                                          short_side=config.val_short_side,
                                          train={"command": run.command_line, "epochs_done": epoch,
                                                 "config": asdict(config)},
                                          metrics=metrics or {})}
    with write_failure(path, "checkpoint"):
        atomic_torch_save(checkpoint, path)


@contextmanager
def write_failure(path: Path, what: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (a full disk, a quota) as one ``DBNetError`` line that
    says what is intact: the atomic write leaves the earlier ``path``, if any, as it was."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        kept = [name for name in ("latest.pt", "best.pt") if (path.parent / name).exists()]
        intact = (f"{' and '.join(kept)} {'is' if len(kept) == 1 else 'are'} intact, as last written" if kept
                  else "no checkpoint was written")
        resume = f"; make room and continue with --resume {path.parent}" if "latest.pt" in kept else ""
        raise DBNetError(f"{path}: cannot write the {what} ({reason}); {intact}{resume}") from None


def save_final_weights(run: Run, state: RunState, selected: dict) -> None:
    """``RUN/weights.pt``: ``run.model`` in half precision with ``run.post``'s thresholds, the run's
    command, settings and figures, and ``selected`` (a fine-tuning run's choice, from
    ``dbcli.training.validation.select_final``; empty: none made)."""
    config = run.config
    metrics = {"val": state.last_val} if state.last_val else {}
    if selected:
        metrics["selected"] = selected
    with write_failure(run.out / "weights.pt", "final weights"):
        save_weights(run.out / "weights.pt", run.model, half=True, postprocess=asdict(run.post),
                     short_side=config.val_short_side,
                     train={"command": run.command_line, "epochs_done": state.finished_epoch,
                            "last_epoch": max(state.last_epoch, state.finished_epoch),
                            "last_epoch_complete": state.last_epoch <= state.finished_epoch, "steps": state.step,
                            "wall_s": time.time() - state.started, "device": str(run.device),
                            "config": asdict(config), **({"selected": selected["message"]} if selected else {})},
                     metrics=metrics)
    run.log(f"weights written to {run.out / 'weights.pt'}")
