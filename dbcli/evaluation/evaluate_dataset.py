"""``dbnet eval``'s work once its options are parsed: pick the images (``select_samples``), load the
model where every command does (``dbcli.engine.load.load``), score it (``evaluate_model``) or
sweep its thresholds (``sweep_model``), or score a predictions file; print the tables
(``dbcli.evaluation.tables``) and write ``--json``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.data.datasets import DATASETS, load_samples, split_holdout
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.evaluation.scoring import Warn
from dbcli.progress import plural

CURVED_DATASETS = ("totaltext", "ctw1500")


def select_samples(dataset: str, data_root, split: str | None, holdout_from_train: float | None,
                   seed: int, limit: int | None):
    """The samples to score and a description such as ``test`` or ``train holdout 0.1 (seed 0)``;
    ``limit``: the first N only (None: all)."""
    if dataset not in DATASETS:
        raise DBNetError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if holdout_from_train is not None:
        if split not in (None, "train"):
            raise DBNetError("--holdout-from-train takes its images from the train split; drop --split "
                             f"{split}")
        if not 0 < holdout_from_train < 1:
            raise DBNetError("--holdout-from-train must be a fraction between 0 and 1 (training's "
                             "--val-fraction, default 0.1)")
        samples = load_samples(dataset, data_root, "train")
        _, samples = split_holdout(samples, holdout_from_train, seed)
        description = f"train holdout {holdout_from_train:g} (seed {seed})"
    else:
        split = split or "test"
        samples = load_samples(dataset, data_root, split)
        description = split
    if limit is not None:
        samples = samples[:limit]
        description += f", first {limit}"
    if not samples:
        raise DBNetError(f"no images in {dataset} {description}")
    return samples, description


def _overlap_warning(weights: dict, dataset: str, split: str | None, holdout: float | None, seed: int) -> str | None:
    """Say when the images scored were (probably) trained on by these weights."""
    cfg = ((weights.get("train") or {}).get("config") or {})
    if cfg.get("dataset") != dataset:
        return None
    if holdout is not None:
        if cfg.get("val_fraction") != holdout or cfg.get("seed") != seed:
            return (f"these weights were trained on {dataset} with --val-fraction {cfg.get('val_fraction')} "
                    f"--seed {cfg.get('seed')}: the held-out images asked for (fraction {holdout:g}, seed "
                    f"{seed}) overlap their training images")
        return None
    if split == "train":
        return f"scoring the train split of {dataset}, which these weights were trained on"
    return None


@dataclass(frozen=True)
class EvalOptions:
    """The options of ``dbnet eval``: the dataset and what to score, and how to run the model
    (``inference``, the options of every command that runs it)."""

    dataset: str = "icdar15"
    data_root: str | Path | None = None
    split: str | None = None
    pred: str | Path | None = None
    limit: int | None = None  # the first N images only (None: all)
    holdout_from_train: float | None = None
    seed: int = 0
    sweep: bool = False
    sweep_thresh: str = defaults.SWEEP_THRESH
    sweep_box_thresh: str = defaults.SWEEP_BOX_THRESH
    allow_test_sweep: bool = False
    json_path: str | Path | None = None  # a file, a folder (gets eval.json), or - (stdout)
    overwrite: bool = False  # --json may replace an existing file that is not an eval report
    inference: InferenceOptions = InferenceOptions()


# Options that run a model, in the order an error lists them (--box-thresh also filters --pred).
_MODEL_ONLY = ("weights", "backend", "short_side", "max_side", "thresh", "unclip_ratio", "polygon", "device",
               "precision", "batch_size", "max_candidates")


def _model_options_given(o: EvalOptions) -> list[str]:
    default = InferenceOptions()
    flags = {f.name: "--" + f.name.replace("_", "-") for f in fields(InferenceOptions)}
    flags["polygon"] = "--polygon/--box"
    given = [flags[name] for name in _MODEL_ONLY if getattr(o.inference, name) != getattr(default, name)]
    return given + (["--sweep"] if o.sweep else [])


def _check_request(o: EvalOptions) -> None:
    """Refuse option values and combinations that make no sense before any work is done."""
    if o.limit is not None and (isinstance(o.limit, bool) or not isinstance(o.limit, int) or o.limit < 1):
        raise DBNetError(f"--limit must be a whole number of images >= 1 (leave it out to score all), got {o.limit}")
    given = _model_options_given(o) if o.pred is not None else []
    if given:
        raise DBNetError(f"--pred scores a predictions file without a model; {', '.join(given)} "
                         "does not apply (--box-thresh filters the predictions by score)")
    effective_split = "train" if o.holdout_from_train is not None else (o.split or "test")
    if o.sweep and effective_split == "test" and not o.allow_test_sweep:
        raise DBNetError("--sweep picks thresholds and must not look at the test split; sweep on "
                         "validation images with --holdout-from-train 0.1 --seed 0 (what dbnet train "
                         "held out), or pass --allow-test-sweep to do it anyway")
    if o.sweep and (o.inference.thresh is not None or o.inference.box_thresh is not None):
        raise DBNetError("--sweep scores the grids of --sweep-thresh and --sweep-box-thresh; drop "
                         "--thresh / --box-thresh")


def _check_text(o: EvalOptions) -> None:
    """``--text`` reads with the model: not with ``--pred`` (a file) nor ``--sweep``."""
    if o.inference.text and (o.pred is not None or o.sweep):
        other = "--pred" if o.pred is not None else "--sweep"
        raise DBNetError(f"--text reads the text with the model; it does not go with {other}")


def eval_inference_options(o: EvalOptions) -> InferenceOptions:
    """``o.inference`` with eval's own defaults: the ``icdar15`` weights for ``--dataset icdar15``
    (unless ``$DBNET_WEIGHTS`` names others), polygons on curved-text datasets, no reading order
    (scoring needs none)."""
    inference = replace(o.inference, sort="none")
    if inference.weights is None and o.dataset == "icdar15" and not os.environ.get("DBNET_WEIGHTS"):
        from dbcli.weights import DEFAULT_ICDAR15_WEIGHTS

        inference = replace(inference, weights=DEFAULT_ICDAR15_WEIGHTS)  # the shipped file trained for it
    if inference.polygon is None and o.dataset in CURVED_DATASETS:
        inference = replace(inference, polygon=True)
    return inference


def _load(o: EvalOptions, warn: Warn) -> tuple[Model, Settings]:
    from dbcli.engine.load import load

    model, settings = load(eval_inference_options(o))
    overlap = _overlap_warning({"train": model.train}, o.dataset, o.split, o.holdout_from_train, o.seed)
    for message in (overlap, model.note):
        if message:
            warn(message)
    return model, settings


def _settings_line(model: Model, settings: Settings) -> str:
    info, post = model.info, settings.post
    precision = info["dtype"]
    return (f"weights {info['weights']} ({info.get('arch')}) on {info['device']}"
            f"{'' if precision == 'fp32' else ', ' + precision}; short side {settings.short_side}"
            + (f", max side {settings.max_side}" if settings.max_side else "")
            + f"; {'polygons' if post.polygon else 'boxes'}, unclip {post.unclip_ratio:g}")


def _score_predictions(o: EvalOptions, samples: list, description: str, header: str, out: Any, warn: Warn) -> dict:
    from dbcli.evaluation.scoring import evaluate_predictions
    from dbcli.evaluation.tables import print_scores

    assert o.pred is not None
    result = evaluate_predictions(samples, o.pred, box_thresh=o.inference.box_thresh, warn=warn)
    report = {"dataset": o.dataset, "split": description, "pred": str(o.pred), **result.to_dict()}
    print_scores(out, f"{header}, predictions {o.pred}", result)
    return report


def _score_model(o: EvalOptions, samples: list, description: str, header: str, consoles: tuple[Any, Any],
                 warn: Warn) -> dict:
    from dbcli.evaluation.scoring import evaluate_model
    from dbcli.evaluation.sweep import parse_grid, sweep_model
    from dbcli.evaluation.tables import print_scores, print_sweep
    from dbcli.progress import progress_bar

    out, err = consoles
    if o.inference.text and any(s.texts is None for s in samples):
        lacking = next(s for s in samples if s.texts is None)
        raise DBNetError(f"--text needs transcriptions: {o.dataset} {description} has none for "
                         f"{lacking.image_path} (ICDAR 2015's gt text, a custom JSONL's \"transcription\")")
    model, settings = _load(o, warn)
    title, post = f"{header}; {_settings_line(model, settings)}", settings.post
    with progress_bar(err, "sweep" if o.sweep else "eval", len(samples), unit=None, transient=True) as bar:
        task = bar.add_task("images", total=len(samples))
        advance = lambda n: bar.update(task, advance=n)  # noqa: E731
        if o.sweep:
            swept = sweep_model(samples, model, settings=settings, warn=warn, progress=advance,
                                box_threshes=parse_grid(o.sweep_box_thresh, "sweep-box-thresh"),
                                threshes=parse_grid(o.sweep_thresh, "sweep-thresh"))
        else:
            scored = evaluate_model(samples, model, settings=settings, warn=warn, progress=advance)
            if scored.capped:
                warn(f"{plural(scored.capped, 'image')} had more than {post.max_candidates} candidate regions; "
                     f"only the first {post.max_candidates} were kept (--max-candidates raises the cap)")
    info = model.info
    common = {"dataset": o.dataset, "split": description, "weights": info["weights"], "device": info["device"],
              "dtype": info["dtype"]}
    if o.sweep:
        print_sweep(out, title, swept)
        return {**common, "sweep": swept.to_dict()}
    print_scores(out, f"{title}; thresh {post.thresh:g}, box_thresh {post.box_thresh:g}", scored)
    return {**common, **scored.to_dict()}


REPORT_NAME = "eval.json"  # the file --json writes inside a folder


def json_target(path: str | Path | None) -> Path | None:
    """The file ``--json`` names: a folder (``results/``, or an existing one) gets ``eval.json``
    inside it, ``-`` is stdout (``dbcli.outputs.paths.output_file``)."""
    if path is None:
        return None
    from dbcli.outputs.paths import output_file

    return output_file(path, REPORT_NAME)


def _check_json(o: EvalOptions, samples: Sequence[Any]) -> Path | None:
    """The ``--json`` file, checked before any scoring (``dbcli.outputs.targets.check_eval_output``):
    it must not replace a file of the dataset (its folder, its ground-truth file, the images of
    ``samples``), the predictions file or a weights file, nor (without ``--overwrite``) a file that is
    not an eval report; its folder must be writable."""
    path = json_target(o.json_path)
    if path is None:
        return None
    from dbcli.data.datasets import resolve_root
    from dbcli.outputs.paths import Protected
    from dbcli.outputs.targets import check_eval_output
    from dbcli.weights import resolve_weights, shipped_files

    protected = Protected().add([o.pred], "the predictions file").add(shipped_files(), "the shipped weights file")
    if o.pred is None:
        protected.add([resolve_weights(eval_inference_options(o).weights)], "the weights file")
    protected.add([s.image_path for s in samples], "the dataset image")
    root = resolve_root(o.dataset, o.data_root)
    protected.add([root], "the ground-truth file").add_folder(root, "a file of the dataset in")
    check_eval_output(path, protected, o.overwrite)
    return path


def _write_json(path: Path | None, report: dict, console: Any) -> None:
    if path is None:
        return
    from dbcli.outputs.atomic import json_text
    from dbcli.outputs.paths import is_stdout, write_output

    try:
        write_output(path, (json_text(report, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write --json ({exc.strerror or exc})") from None
    if not is_stdout(path):
        console.print(f"figures written to {path}")


def evaluate_dataset(options: EvalOptions) -> dict:
    """``dbnet eval``: score a model (or ``options.pred``, a predictions file) on a dataset split, print
    the tables and write ``options.json_path``; returns the report written there."""
    from rich.console import Console

    from dbcli.evaluation.sweep import parse_grid
    from dbcli.outputs.paths import is_stdout

    o = options
    json_path = json_target(o.json_path)
    out = Console(highlight=False, stderr=is_stdout(json_path))  # --json -: stdout is the report's
    err = Console(stderr=True, highlight=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, soft_wrap=True)

    _check_request(o)
    _check_text(o)
    if o.sweep:  # malformed grids are refused before the slow work
        parse_grid(o.sweep_thresh, "sweep-thresh")
        parse_grid(o.sweep_box_thresh, "sweep-box-thresh")
    samples, description = select_samples(o.dataset, o.data_root, o.split, o.holdout_from_train, o.seed, o.limit)
    json_path = _check_json(o, samples)
    header = f"{o.dataset} {description}: {plural(len(samples), 'image')}"
    if o.pred is not None:
        report = _score_predictions(o, samples, description, header, out, warn)
    else:
        report = _score_model(o, samples, description, header, (out, err), warn)
    _write_json(json_path, report, out)
    return report
