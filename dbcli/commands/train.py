"""``dbnet train``: ``TrainConfig``'s annotated fields as options, ``dbcli.training.loop.train`` out."""

from __future__ import annotations

import shlex
import sys
from typing import Optional

import typer

from dbcli.commands.common import fail, needs_torch, options_from
from dbcli.errors import DBNetError
from dbcli.training.config import TrainConfig


@needs_torch("dbnet train")
@options_from(TrainConfig, name="config")
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
    """Train DBNet with the paper's recipe; writes checkpoints, logs and weights.pt to the run folder."""
    from dataclasses import replace

    from dbcli.training.loop import train as run_training

    given = {k: v for k, v in (("thresh", thresh), ("box_thresh", box_thresh)) if v is not None}
    sources = {name: context.get_parameter_source(name) for name in context.params}
    chosen = frozenset(name for name, source in sources.items() if source is not None and source.name != "DEFAULT")
    try:
        run_training(replace(config, post=given), command_line=shlex.join(["dbnet", *sys.argv[1:]]), given=chosen)
    except DBNetError as exc:
        fail(str(exc))
