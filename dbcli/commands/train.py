"""``dbnet train``: ``TrainConfig``'s annotated fields as options, ``dbcli.training.loop.train`` out."""

from __future__ import annotations

import shlex
import sys
from typing import Optional

import typer

from dbcli.commands.common import fail, needs_torch, options_from, say_error
from dbcli.errors import DBNetError
from dbcli.training.config import TrainConfig
from dbcli.training.recipe import recipe_notes


@needs_torch("dbnet train")
@options_from(TrainConfig, name="config", notes=recipe_notes())
def train(
    context: typer.Context,
    thresh: Optional[float] = typer.Option(None, show_default=False,
                                           help="Binarisation threshold for validation (default: the "
                                                "--init-weights file's or a resumed run's, else 0.3)."),
    box_thresh: Optional[float] = typer.Option(None, show_default=False,
                                               help="Box score threshold for validation (default: the "
                                                    "--init-weights file's or a resumed run's, else 0.6)."),
    *,
    config: TrainConfig,
) -> None:
    """Train DBNet; writes checkpoints, logs and weights.pt to the run folder.

    From scratch the defaults are the paper's recipe (shown as [default: ...]); with --init-weights
    (fine-tuning) every option not given takes the fine-tuning recipe's value instead (shown as
    "With --init-weights: ..."; --no-recipe keeps the paper's).
    """
    from dataclasses import replace

    from dbcli.training.loop import train as run_training

    given = {k: v for k, v in (("thresh", thresh), ("box_thresh", box_thresh)) if v is not None}
    sources = {name: context.get_parameter_source(name) for name in context.params}
    chosen = frozenset(name for name, source in sources.items() if source is not None and source.name != "DEFAULT")
    from dbcli.training.interrupts import TrainingInterrupted

    try:
        run_training(replace(config, post=given), command_line=shlex.join(["dbnet", *sys.argv[1:]]), given=chosen)
    except TrainingInterrupted as exc:  # (already in the log's last line: said here, on stderr)
        say_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except DBNetError as exc:
        fail(str(exc))
