"""The learning rate and the run's budget, step by step: poly decay (``poly_lr``) after a linear
warm-up (``warmup_factor``), fitted into ``--time-limit`` when the schedule follows the clock
(``set_lr``); the threshold-branch warm-up's steps (``in_head_warmup``); the stop at
``--max-steps`` / ``--time-limit`` (``budget_spent``); a warning when the time limit leaves too few
steps after the warm-ups (``say_short_budget``)."""

from __future__ import annotations

import time

from dbcli.training.recipe import HEAD_WARMUP_MAX_SHARE
from dbcli.training.state import Run, RunState, Stop


def poly_lr(base_lr: float, progress: float, power: float) -> float:
    """Poly decay on training progress in [0, 1] (the authors step it per epoch; we step it per
    iteration, which is smoother): lr = base_lr * (1 - progress) ** power."""
    return base_lr * max(0.0, 1.0 - progress) ** power


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up multiplier for optimizer step ``step`` (0-based, counted over the whole run):
    (step + 1) / warmup_steps for the first ``warmup_steps`` steps, then 1. Fine-tuning needs it:
    a fresh AdamW's first updates move every weight by about lr, whatever its gradient's size."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def set_lr(run: Run, state: RunState) -> None:
    """The poly-decayed, warmed-up learning rate of ``state.step`` into ``state.lr`` and the optimizer."""
    config = run.config
    progress_frac = state.step / (run.total_steps + 1)
    if config.time_limit and config.time_schedule:
        # The schedule ends at whichever comes first: the last step or the time limit.
        progress_frac = max(progress_frac, (time.time() - state.started) / (config.time_limit * 60))
    if in_head_warmup(run, state):  # the threshold branch alone, at the full lr
        state.lr = config.lr
    else:
        state.lr = poly_lr(config.lr, progress_frac, config.poly_power) * warmup_factor(
            state.step - state.head_steps, config.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = state.lr


def in_head_warmup(run: Run, state: RunState) -> bool:
    """Whether this step trains the threshold branch alone: within ``--head-warmup-steps`` and, with a
    time limit, within the first ``HEAD_WARMUP_MAX_SHARE`` of it counted from the first step (not
    under torchrun: DDP needs every parameter to train)."""
    config = run.config
    if not config.head_warmup_steps or run.distributed or state.step >= config.head_warmup_steps:
        return False
    state.training_from = state.training_from or time.time()
    return not config.time_limit or time.time() - state.training_from < HEAD_WARMUP_MAX_SHARE * config.time_limit * 60


def budget_spent(run: Run, state: RunState) -> bool:
    """Whether ``--max-steps`` or ``--time-limit`` stops the run now (then ``state.stop`` says which)."""
    config = run.config
    if config.max_steps and state.step - state.start_step >= config.max_steps:
        state.stop, state.stop_message = Stop.MAX_STEPS, f"--max-steps {config.max_steps} reached"
    elif config.time_limit and time.time() - state.started > config.time_limit * 60:
        state.stop, state.stop_message = Stop.TIME_LIMIT, f"--time-limit {config.time_limit} min reached"
        if not config.time_schedule:
            state.stop_message += (f" at step {state.step} of {run.total_steps}, with the lr at {state.lr:.3g} "
                                   f"({state.lr / config.lr:.0%} of --lr {config.lr:g}): the poly decay was "
                                   f"set for {config.epochs} epochs (--no-time-schedule)")
    return state.stop is not None


PACE_STEPS = 3  # steps of this session timed before the budget is judged


def short_budget_note(run: Run, state: RunState, now: float) -> str | None:
    """Under ``--time-limit``, once ``PACE_STEPS`` steps of this session are timed (``state.pace``): a
    warning when the steps the budget leaves at that pace are fewer than twice the warm-ups' (lr and
    threshold branch: the recipe's 50 + 100), so that little or no training follows them and
    ``weights.pt`` is likely the start; ``""`` when the budget is enough; None while not yet known."""
    config = run.config
    warm = config.warmup_steps + (config.head_warmup_steps or 0)
    if not config.time_limit or not warm or state.pace is None or state.step - state.pace[1] < PACE_STEPS:
        return None
    per_step = (now - state.pace[0]) / (state.step - state.pace[1])
    left_s = max(0.0, config.time_limit * 60 - (now - state.started))
    projected = state.step + int(left_s / max(per_step, 1e-9))
    if projected >= 2 * warm:
        return ""
    return (f"warning: at {per_step:.2g} s/step, --time-limit {config.time_limit:g} min leaves ~{projected} steps "
            f"in all, and the warm-ups take {warm} ({config.warmup_steps} lr warm-up + "
            f"{config.head_warmup_steps or 0} threshold-branch steps; the threshold-branch warm-up stops at "
            f"{HEAD_WARMUP_MAX_SHARE:.0%} of the time): too little training follows them to beat the start, "
            f"which weights.pt then keeps. Give --time-limit {4 * warm * per_step / 60:.0f} or more, or fewer "
            "warm-up steps (--warmup-steps, --head-warmup-steps)")


def say_short_budget(run: Run, state: RunState) -> None:
    """After each step: start timing this session's pace, then say ``short_budget_note`` once."""
    now = time.time()
    if state.pace is None:
        state.pace = (now, state.step)
        return
    if state.budget_judged:
        return
    note = short_budget_note(run, state, now)
    if note is not None:
        state.budget_judged = True
        if note:
            run.log(note)
