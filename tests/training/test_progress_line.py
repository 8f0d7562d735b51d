"""``dbnet train``'s progress line on an 80-column terminal: the bar, the step counter and the ETA
stay; the loss details go first. Under ``--time-limit`` the bar, the counter's total and the ETA
follow the clock, not the nominal epochs x steps. (No training: a run and its state stand in.)"""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

from rich.console import Console

from dbcli.training.progress_line import budget_fraction, fitting, loss_texts, show, step_text, train_progress

MEANS = {"loss": 1.2345, "loss_prob": 0.4321, "loss_binary": 0.3456, "loss_thresh": 0.01234}


def run_and_state(step: int, time_limit: float = 0.0, spent_s: float = 0.0, max_steps: int = 0):
    config = SimpleNamespace(epochs=100, time_limit=time_limit, max_steps=max_steps)
    run = SimpleNamespace(config=config, total_steps=100 * 50)
    state = SimpleNamespace(step=step, start_step=0, started=time.time() - spent_s)
    return run, state


def rendered(width: int, run, state) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress, task = train_progress(console)
    show(progress, task, run, state, loss_texts(2, 100, MEANS, 0.00123, 15.2))
    console.print(progress.get_renderable())
    return console.file.getvalue().rstrip("\n")


def test_at_80_columns_the_bar_counter_and_eta_stay():
    run, state = run_and_state(2500)  # half way: half the bar drawn
    line = rendered(80, run, state)
    assert "\n" not in line and len(line) <= 80, line
    assert "━" * 6 in line and "step 2500/5000" in line and "eta" in line, line
    assert "ep 3/100 loss 1.234" in line and "(P " not in line  # the details went first
    wide = rendered(160, run, state)
    assert "(P 0.432 B 0.346 T 0.0123)" in wide and "img/s" in wide


def test_narrow_terminals_drop_the_loss_before_anything_else():
    run, state = run_and_state(2500)
    line = rendered(60, run, state)
    assert "\n" not in line and "━" * 6 in line and "step 2500/5000" in line and "eta" in line, line


def test_a_time_limit_sets_the_budget():
    """3 minutes of a 10-minute budget spent at step 120: 30% done, ~400 steps in all (not 5000)."""
    run, state = run_and_state(120, time_limit=10, spent_s=180)
    assert abs(budget_fraction(run, state) - 0.3) < 0.01
    assert step_text(run, state) == "step 120/~400"
    run, state = run_and_state(4000, time_limit=600, spent_s=60)  # the epochs end first: their total
    assert step_text(run, state) == "step 4000/5000"
    run, state = run_and_state(30, max_steps=200)
    assert step_text(run, state) == "step 30/200" and budget_fraction(run, state) == 30 / 200


def test_the_longest_fitting_text_is_shown():
    texts = loss_texts(0, 5, MEANS, 0.007, 3.0)
    assert texts[0].startswith("ep 1/5 loss 1.234 (P") and texts[-1] == ""
    assert fitting(texts, 19) == "ep 1/5 loss 1.234" and fitting(texts, 3) == ""


def test_log_lines_are_not_hard_wrapped_when_redirected():
    """A console that is not a terminal is 80 columns to rich; a log line longer than that stays one
    line (a file or a pipe keeps it whole; a terminal wraps it itself)."""
    from dbcli.training.state import RunLog

    console = Console(file=io.StringIO(), width=80)
    message = "step 120/5000 " + "ep 3/100 loss 1.234 (P 0.432 B 0.346 T 0.0123) lr 0.00123 15.2 img/s " * 2
    RunLog(console, io.StringIO())(message.strip())
    assert console.file.getvalue() == message.strip() + "\n"


def test_train_help_shows_the_papers_defaults_and_the_recipes():
    """``--batch-size`` and the others the fine-tuning recipe sets show both values: the paper's as
    the default, the recipe's as "With --init-weights: ..." (from ``recipe.RECIPE`` itself)."""
    import re

    from generated_files import runner

    from dbcli.cli import app
    from dbcli.training.recipe import RECIPE

    text = re.sub(r"\s+", " ", runner.invoke(app, ["train", "--help"], terminal_width=200).output)
    assert "--batch-size <int> Images per step per process (paper: 16). With --init-weights: 8 (the " \
           "fine-tuning recipe). [default: 16]" in text, text
    for name in ("batch_size", "lr", "optimizer", "crop_size", "epochs", "val_every", "warmup_steps"):
        value = RECIPE[name]
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        flag = "--" + name.replace("_", "-")
        assert re.search(re.escape(flag) + r" <\w+> [^\[]*With --init-weights: " + re.escape(shown), text), flag


def test_a_time_limit_too_short_for_the_warm_ups_is_said_once(monkeypatch):
    """A 3-minute fine-tune at 10 s/step: ~18 steps against the recipe's 50 + 100 warm-up steps. After
    this session's first steps are timed, one warning says so and what budget would do; a budget
    that leaves enough steps says nothing."""
    from dbcli.training.schedule import PACE_STEPS, say_short_budget, short_budget_note
    from dbcli.training.state import RunState

    def fixture(time_limit: float):
        lines: list[str] = []
        config = SimpleNamespace(time_limit=time_limit, warmup_steps=50, head_warmup_steps=100)
        run = SimpleNamespace(config=config, log=lines.append)
        return run, RunState(started=1000.0), lines

    run, state, _ = fixture(3)
    state.pace = (1000.0, 0)
    state.step = PACE_STEPS - 1
    assert short_budget_note(run, state, now=1020.0) is None  # not timed enough yet
    state.step = PACE_STEPS
    note = short_budget_note(run, state, now=1030.0)  # 10 s/step, 150 s left: ~18 steps
    assert note.startswith("warning: at 10 s/step, --time-limit 3 min leaves ~18 steps") and "150 (50 lr" in note
    assert "Give --time-limit 100 or more" in note
    run, state, _ = fixture(600)
    state.pace, state.step = (1000.0, 0), PACE_STEPS
    assert short_budget_note(run, state, now=1030.0) == ""  # ~3600 steps: enough

    run, state, lines = fixture(3)  # through the loop's hook: timed from the first step, said once
    clock = iter([1000.0 + 10 * k for k in range(10)])
    import dbcli.training.schedule as schedule

    monkeypatch.setattr(schedule.time, "time", lambda: next(clock))
    for step in range(1, 8):
        state.step = step
        say_short_budget(run, state)
    assert len(lines) == 1 and lines[0].startswith("warning: at 10 s/step")
