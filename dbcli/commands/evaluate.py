"""``dbnet eval``: options in, ``dbcli.evaluation.evaluate_dataset.evaluate_dataset`` out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dbcli import defaults
from dbcli.commands.common import fail, options_from
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError


@options_from(InferenceOptions, exclude=("exif", "sort"))  # datasets say their EXIF rule; scores need no order
def eval_command(
    dataset: str = typer.Option("icdar15", help="icdar15, td500, totaltext, ctw1500 or custom."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder (default: $DBNET_DATA/<dataset>)."),
    split: Optional[str] = typer.Option(None, help="train or test (default: test)."),
    pred: Optional[Path] = typer.Option(None, help="Score this predictions file (dbnet detect's JSON or JSONL) "
                                                   "instead of running a model."),
    limit: Optional[int] = typer.Option(None, show_default=False,
                                        help="Score only the first N images, N >= 1 (default: all)."),
    holdout_from_train: Optional[float] = typer.Option(
        None, help="Score the images this fraction of the train split held out, exactly as dbnet train "
                   "--val-fraction does (with --seed)."),
    seed: int = typer.Option(0, help="Seed of --holdout-from-train (dbnet train's --seed)."),
    sweep: bool = typer.Option(False, help="Score a grid of thresh x box_thresh (network run once per "
                                           "image) and report the best setting."),
    sweep_thresh: str = typer.Option(defaults.SWEEP_THRESH, help="thresh grid: list or start:stop:step."),
    sweep_box_thresh: str = typer.Option(defaults.SWEEP_BOX_THRESH, help="box_thresh grid: list or start:stop:step."),
    allow_test_sweep: bool = typer.Option(False, help="Allow --sweep on the test split."),
    json_path: Optional[str] = typer.Option(None, "--json", "--out", "-o", metavar="<path>",
                                            help="Also write the figures to this JSON file (a folder such as "
                                                 "results/ gets eval.json inside it; - for stdout, the tables "
                                                 "then go to stderr)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Let --json replace an existing file that is not an eval report "
                                        "(the dataset's files, --pred and weights files are never replaced)."),
    *,
    options: InferenceOptions,
) -> None:
    """Evaluate on a dataset split (ICDAR 2015 IoU protocol): precision, recall, hmean, images/s."""
    from dbcli.cpu import quiet_openmp, tune_malloc
    from dbcli.evaluation.evaluate_dataset import EvalOptions, evaluate_dataset

    tune_malloc()  # this process runs the network over and over: keep its buffers mapped
    quiet_openmp()  # torch's threads sleep when idle: fast on shared cores too
    try:
        evaluate_dataset(EvalOptions(
            dataset=dataset, data_root=data_root, split=split, pred=pred, limit=limit,
            holdout_from_train=holdout_from_train, seed=seed, sweep=sweep, sweep_thresh=sweep_thresh,
            sweep_box_thresh=sweep_box_thresh, allow_test_sweep=allow_test_sweep, json_path=json_path,
            overwrite=overwrite, inference=options))
    except DBNetError as exc:
        fail(str(exc))
