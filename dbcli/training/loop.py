"""The training loop (SPEC: "Training recipe"), top to bottom: ``train(config)`` (its settings:
``TrainConfig`` in ``dbcli.training.config``) sets a run up (``dbcli.training.setup``, or restores it
from its checkpoint: ``dbcli.training.checkpoints``), then for each epoch ``train_one_epoch`` (its lr:
``dbcli.training.schedule``) and ``_end_epoch``: ``validate_and_keep_best``
(``dbcli.training.validation``), ``metrics.jsonl`` and ``latest.pt``; then the final choice
(``select_final``) and ``weights.pt``.

SGD (momentum 0.9, weight decay 1e-4), lr 0.007 with poly decay (power 0.9), batch 16, 640 crops,
the authors' augmentation, labels made in DataLoader workers (``dbcli.training.data``). Mixed
precision (fp16 on CUDA, bf16 on CPUs that support it), channels-last, DDP under torchrun, atomic
checkpoints (latest + best), exact ``--resume``, NaN/inf guard, rich progress + ``train.log`` +
``metrics.jsonl``.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from dbcli.device import world
from dbcli.errors import DBNetError
from dbcli.training.checkpoints import restore_state, save_checkpoint, save_final_weights
from dbcli.training.config import TrainConfig, check_config, ignored_on_resume
from dbcli.training.finetune import set_head_warmup
from dbcli.training.interrupts import interrupted, stop_on_sigterm, stopped_by_signal
from dbcli.training.losses import db_loss
from dbcli.training.progress_line import loss_texts, show, step_text, train_progress
from dbcli.training.recipe import default_given, describe
from dbcli.training.run_folder import open_run_folder, run_folder_lock, run_folder_path, say_housekeeping
from dbcli.training.schedule import budget_spent, in_head_warmup, say_short_budget, set_lr
from dbcli.training.setup import announce, prepare_device, resolve_config, setup_run
from dbcli.training.state import Run, RunLog, RunState, Stop
from dbcli.training.validation import select_final, validate_and_keep_best


def train(config: TrainConfig, command_line: str = "", given: frozenset[str] | None = None) -> Path:
    """Run (or resume) a training run; returns the run folder. Final weights: ``RUN/weights.pt``.
    ``given``: the settings the user chose (the fine-tuning recipe fills the others); default: those
    that differ from ``TrainConfig()``'s."""
    from rich.console import Console

    check_config(config)
    chosen = default_given(config) if given is None else given
    device, distributed = prepare_device(config)
    is_main = world()[0] == 0
    console = Console(stderr=True, quiet=not is_main)
    asked, (config, resume_state, init_weights) = config, resolve_config(config, chosen)
    with ExitStack() as files:
        out = run_folder_path(config)
        files.enter_context(run_folder_lock(out, is_main))
        out, earlier = open_run_folder(config, out, resume_state is not None, is_main)
        log = RunLog(console, files.enter_context(open(out / "train.log", "a", encoding="utf-8"))
                     if is_main else None)
        ignored = ignored_on_resume(asked, config) if resume_state is not None else []
        say_housekeeping(log, out, earlier, ignored, is_main)
        run = setup_run(config, out, resume_state, init_weights, device, distributed, log, command_line)
        state = restore_state(run, resume_state)
        if is_main:
            announce(run)
            if config.recipe:
                run.log(describe(config, chosen))
        metrics_file = files.enter_context(open(out / "metrics.jsonl", "a", encoding="utf-8")) if is_main else None
        state.started += time.time()
        try:
            with stop_on_sigterm(state, enabled=not distributed):
                _train_epochs(run, state, console, metrics_file)
        except KeyboardInterrupt:
            stop = interrupted(out, state)
            log.to_file(f"error: {stop}")
            raise stop from None
        if is_main:
            save_final_weights(run, state, select_final(run, state))
        if state.stop is Stop.SIGNAL:
            stop = stopped_by_signal(out, state)
            log.to_file(f"error: {stop}")
            raise stop
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    if state.stop is Stop.NON_FINITE:
        raise DBNetError("training stopped: the loss was not finite 10 steps in a row (lower --lr?)")
    return out


def _train_epochs(run: Run, state: RunState, console: Any, metrics_file: Any) -> None:
    """Every epoch left (``train_one_epoch`` then ``_end_epoch``) until the last or a stop."""
    progress, task = train_progress(console)
    show(progress, task, run, state, [""])
    run.model.train()
    if run.is_main and run.config.init_weights and run.val_samples and state.step == 0:
        record = {"epoch": 0, "step": 0, "elapsed_s": time.time() - state.started}
        validate_and_keep_best(run, state, -1, record)  # the start: what every checkpoint must beat
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
    with progress:
        for epoch in range(state.start_epoch, run.config.epochs):
            done = train_one_epoch(run, state, epoch, progress, task)
            if state.stop is Stop.NON_FINITE:
                break
            _end_epoch(run, state, epoch, done, metrics_file)
            if state.stop is not None:
                break
    if state.stop is not None:
        run.log(f"stopped: {state.stop_message}")


def train_one_epoch(run: Run, state: RunState, epoch: int, progress: Any, task: Any) -> dict:
    """Train on one epoch's batches (the rest of it, for a run resumed mid-epoch); returns
    ``{"batches", "sums", "count", "seen", "t_epoch"}``. Sets ``state.stop`` when the run must stop."""
    config = run.config
    run.sampler.set_epoch(epoch)
    batches = state.skip_batches if epoch == state.start_epoch else 0  # batches of this epoch consumed
    run.sampler.skip = batches * config.batch_size
    sums: dict[str, float] = {}
    count, seen, t_epoch = 0, 0, time.time()
    for batch in run.loader:
        batches += 1
        set_lr(run, state)
        head_only = in_head_warmup(run, state)
        if config.head_warmup_steps:
            set_head_warmup(run.model, head_only)
        parts = _train_step(run, state, batch, head_only)
        if parts is None:  # a non-finite loss: the step skipped
            if state.stop is not None:
                break
            continue
        count += 1
        if run.is_main:
            say_short_budget(run, state)
        seen += len(batch["image"]) * run.world_size
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        rate = seen / max(time.time() - t_epoch, 1e-6)
        texts = loss_texts(epoch, config.epochs, {k: v / count for k, v in sums.items()}, state.lr, rate)
        show(progress, task, run, state, texts)
        if state.step % config.log_every == 0:
            run.log(f"{step_text(run, state)} {texts[0]}")
        if budget_spent(run, state):
            break
    return {"batches": batches, "sums": sums, "count": count, "seen": seen, "t_epoch": t_epoch}


def _train_step(run: Run, state: RunState, batch: dict[str, torch.Tensor], head_only: bool
                ) -> dict[str, torch.Tensor] | None:
    """One optimizer step on ``batch`` (``image``: ``(B, 3, S, S)`` normalised crops; the four
    ``(B, S, S)`` label maps): forward under autocast, ``db_loss``, backward, step. Returns the loss
    parts (0-d tensors), or None when the loss is not finite (the step skipped: ``_non_finite``)."""
    device = run.device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    images_t = batch["image"].contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
        outputs = run.ddp(images_t)
    parts = db_loss(outputs, batch, run.loss_config)
    loss = parts["loss"]
    if not torch.isfinite(loss):
        _non_finite(run, state)
        return None
    state.bad_steps = 0
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    state.step += 1
    state.head_steps += head_only
    return parts


def _non_finite(run: Run, state: RunState) -> None:
    """A skipped step: counted, said, and the run stopped after 10 in a row (``state.stop``)."""
    state.bad_steps += 1
    run.log(f"warning: non-finite loss at step {state.step} ({state.bad_steps} in a row): step skipped")
    run.optimizer.zero_grad(set_to_none=True)
    if state.bad_steps >= 10:
        state.stop, state.stop_message = Stop.NON_FINITE, "10 non-finite losses in a row"


def _end_epoch(run: Run, state: RunState, epoch: int, done: dict, metrics_file: Any) -> None:
    """After an epoch (or the part of it a stop left): validation, ``metrics.jsonl``, ``latest.pt``."""
    config = run.config
    run.sampler.skip = 0
    epoch_complete = done["batches"] >= run.steps_per_epoch  # (a stop on an epoch's last step completes it)
    state.finished_epoch = epoch + 1 if epoch_complete else epoch
    state.last_epoch = epoch + 1
    count = done["count"]
    record = {"epoch": epoch + 1, "step": state.step, "lr": state.lr,
              **{k: v / max(count, 1) for k, v in done["sums"].items()},
              "images_per_s": done["seen"] / max(time.time() - done["t_epoch"], 1e-6),
              "elapsed_s": time.time() - state.started}
    if _validates(run, state, epoch, epoch_complete, count):
        validate_and_keep_best(run, state, epoch, record)
    if run.is_main:
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        partial = "" if epoch_complete else (f" (partial: {done['batches']} of {run.steps_per_epoch} steps; "
                                             f"{state.finished_epoch} epochs complete)")
        run.log(f"epoch {epoch + 1}{partial}: loss {record.get('loss', float('nan')):.4f} "
                f"{record['images_per_s']:.1f} img/s")
        if state.stop is not None or (epoch + 1) % config.save_every == 0 or epoch + 1 == config.epochs:
            save_checkpoint(run, state, run.out / "latest.pt", state.finished_epoch, state.last_val,
                            epoch_batches=0 if epoch_complete else done["batches"])


def _validates(run: Run, state: RunState, epoch: int, epoch_complete: bool, count: int) -> bool:
    """Whether this epoch's end validates: every ``--val-every`` complete epochs and the last one, and
    a fine-tuning run stopped early by its time or step limit (its last checkpoint is a candidate for
    ``weights.pt``); the main process only, with a hold-out."""
    config = run.config
    if not (run.is_main and run.val_samples):
        return False
    stopped_early = state.stop in (Stop.TIME_LIMIT, Stop.MAX_STEPS) and bool(config.init_weights) and count > 0
    return stopped_early or epoch_complete and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)
