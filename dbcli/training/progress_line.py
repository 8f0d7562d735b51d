"""``dbnet train``'s progress line: a bar, the step counter and the ETA always fit (an 80-column
terminal included); the loss details are dropped first when the line is short of room, and stay in
``train.log``. Under ``--time-limit`` (or ``--max-steps``) the bar, the counter's total and the ETA
follow whichever budget ends the run first, not the nominal ``epochs x steps``."""

from __future__ import annotations

import time
from typing import Any

from dbcli.progress import progress_enabled
from dbcli.training.state import Run, RunState

BAR_WIDTH = 16
SCALE = 1000  # the bar's task counts thousandths of the budget
# label, bar, elapsed, "eta", remaining, and the spaces between the columns
FIXED_WIDTH = len("train") + BAR_WIDTH + len("0:00:00") + len("eta") + len("0:00:00") + 6


def budget_fraction(run: Run, state: RunState) -> float:
    """The share of the run's budget spent, in [0, 1]: its steps of all epochs, or of ``--max-steps``,
    or its time of ``--time-limit``, whichever is furthest along."""
    config = run.config
    shares = [state.step / max(run.total_steps, 1)]
    if config.max_steps:
        shares.append((state.step - state.start_step) / config.max_steps)
    if config.time_limit:
        shares.append((time.time() - state.started) / (config.time_limit * 60))
    return min(1.0, max(shares))


def step_text(run: Run, state: RunState) -> str:
    """``step 120/5000``, or ``step 120/~840`` when a budget (time or ``--max-steps``) ends the run
    before its last epoch: the total then projected from the pace so far."""
    total = run.total_steps
    if run.config.max_steps:
        total = min(total, state.start_step + run.config.max_steps)
    fraction = budget_fraction(run, state)
    done_share = state.step / max(total, 1)
    if run.config.time_limit and fraction > done_share and state.step > 0:
        return f"step {state.step}/~{max(state.step, round(state.step / fraction))}"
    return f"step {state.step}/{total}"


def loss_texts(epoch: int, epochs: int, means: dict[str, float], lr: float, rate: float) -> list[str]:
    """The loss details from longest to shortest (the line shows the longest that fits; ``train.log``
    the first)."""
    head = f"ep {epoch + 1}/{epochs} loss {means['loss']:.3f}"
    parts = f"(P {means['loss_prob']:.3f} B {means['loss_binary']:.3f} T {means['loss_thresh']:.4f})"
    return [f"{head} {parts} lr {lr:.5f} {rate:.1f} img/s", f"{head} lr {lr:.5f} {rate:.1f} img/s",
            f"{head} lr {lr:.5f}", head, f"loss {means['loss']:.3f}", ""]


def fitting(texts: list[str], room: int) -> str:
    """The first of ``texts`` at most ``room`` characters long (the last, ``""``, always fits)."""
    return next((text for text in texts if len(text) <= room), "")


def train_progress(console: Any) -> tuple[Any, Any]:
    """The rich ``Progress`` of a run and its task: label, bar, step counter, elapsed, eta, loss
    details (columns that never wrap). Disabled as every bar is (``dbcli.progress``)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column

    columns = [TextColumn("[bold]train"), BarColumn(bar_width=BAR_WIDTH), TextColumn("{task.fields[steps]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis"))]
    progress = Progress(*columns, console=console, disable=not progress_enabled(console))
    task = progress.add_task("train", total=SCALE, completed=0, steps="", info="")
    return progress, task


def show(progress: Any, task: Any, run: Run, state: RunState, texts: list[str]) -> None:
    """Update the line: the budget spent, the step counter, and the longest of ``texts`` that leaves
    room for the rest on the console's width."""
    steps = step_text(run, state)
    room = progress.console.width - FIXED_WIDTH - len(steps) - 1
    progress.update(task, completed=round(SCALE * budget_fraction(run, state)), steps=steps,
                    info=fitting(texts, room))
