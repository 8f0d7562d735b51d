"""What ``dbnet eval`` does once its options are parsed: pick the images, the weights and the
post-processing settings, run ``dbcli.evaluate``, print rich tables and write ``--json``."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from dbcli.datasets import DATASETS, load_samples, split_holdout
from dbcli.errors import DBNetError
from dbcli.imaging import DEFAULT_MAX_MEGAPIXELS
from dbcli.progress import plural

CURVED_DATASETS = ("totaltext", "ctw1500")


def parse_grid(text: str, name: str) -> tuple[float, ...]:
    """``"0.3:0.8:0.05"`` (start:stop:step, stop included) or ``"0.2,0.25,0.3"``."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            values = [round(start + i * step, 6) for i in range(count) if start + i * step <= stop + 1e-9]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DBNetError(f"--{name}: expected start:stop:step or a comma-separated list, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise DBNetError(f"--{name}: values must lie in [0, 1], got {text!r}")
    return tuple(values)


def select_samples(dataset: str, data_root, split: str | None, holdout_from_train: float | None,
                   seed: int, limit: int):
    """The samples to score and a description such as ``test`` or ``train holdout 0.1 (seed 0)``."""
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
    if limit:
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
    """The options of ``dbnet eval`` (None: not given, the weights file's or the library's default)."""

    dataset: str = "icdar15"
    data_root: str | Path | None = None
    split: str | None = None
    weights: str | Path | None = None
    pred: str | Path | None = None
    short_side: int | None = None
    max_side: int | None = None
    thresh: float | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None
    polygon: bool | None = None
    device: str | None = None
    precision: str | None = None
    batch_size: int | None = None
    limit: int = 0
    holdout_from_train: float | None = None
    seed: int = 0
    sweep: bool = False
    sweep_thresh: str = "0.2,0.25,0.3,0.35"
    sweep_box_thresh: str = "0.3:0.8:0.05"
    allow_test_sweep: bool = False
    json_path: str | Path | None = None
    max_candidates: int | None = None
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS


def _check_request(o: EvalOptions) -> None:
    """Refuse option combinations that make no sense before any work is done."""
    if o.pred is not None:
        model_only = {"--weights": o.weights, "--short-side": o.short_side, "--max-side": o.max_side,
                      "--thresh": o.thresh, "--unclip-ratio": o.unclip_ratio, "--polygon/--box": o.polygon,
                      "--device": o.device, "--precision": o.precision, "--batch-size": o.batch_size,
                      "--sweep": o.sweep or None, "--max-candidates": o.max_candidates}
        given = [name for name, value in model_only.items() if value is not None]
        if given:
            raise DBNetError(f"--pred scores a predictions file without a model; {', '.join(given)} "
                             "does not apply (--box-thresh filters the predictions by score)")
    effective_split = "train" if o.holdout_from_train is not None else (o.split or "test")
    if o.sweep and effective_split == "test" and not o.allow_test_sweep:
        raise DBNetError("--sweep picks thresholds and must not look at the test split; sweep on "
                         "validation images with --holdout-from-train 0.1 --seed 0 (what dbnet train "
                         "held out), or pass --allow-test-sweep to do it anyway")
    if o.sweep and (o.thresh is not None or o.box_thresh is not None):
        raise DBNetError("--sweep scores the grids of --sweep-thresh and --sweep-box-thresh; drop "
                         "--thresh / --box-thresh")


def _load_model(o: EvalOptions, warn):
    """The backend (``dbcli.backends.load_model``, as ``dbnet detect``) and the engine settings."""
    from dbcli.backends import load_model
    from dbcli.engine import resolve_settings

    weights = o.weights
    if weights is None and o.dataset == "icdar15" and not os.environ.get("DBNET_WEIGHTS"):
        from dbcli.weights import DEFAULT_ICDAR15_WEIGHTS

        weights = DEFAULT_ICDAR15_WEIGHTS  # the shipped file trained for it
    model = load_model(weights, None, o.device or "auto", (o.precision or "fp32").lower())
    overlap = _overlap_warning({"train": model.train}, o.dataset, o.split, o.holdout_from_train, o.seed)
    if overlap:
        warn(overlap)
    if model.note:
        warn(model.note)
    polygon = True if o.polygon is None and o.dataset in CURVED_DATASETS else o.polygon
    settings = resolve_settings(model, o.short_side, o.max_side, o.thresh, o.box_thresh, o.unclip_ratio,
                                polygon, o.batch_size or 1, True, o.max_megapixels, o.max_candidates,
                                sort="none")  # scoring needs no reading order
    return model, settings


def run(options: EvalOptions | None = None, **given) -> dict:
    """``dbnet eval``: score a model (or ``pred``, a predictions file) on a dataset split, print the
    tables and write ``json_path``. ``options`` or keyword options (``EvalOptions``' fields)."""
    from rich.console import Console

    from dbcli.progress import progress_bar

    o = replace(options, **given) if options is not None else EvalOptions(**given)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, soft_wrap=True)

    _check_request(o)
    if o.sweep:
        threshes = parse_grid(o.sweep_thresh, "sweep-thresh")
        box_threshes = parse_grid(o.sweep_box_thresh, "sweep-box-thresh")
    if o.json_path is not None:
        from dbcli.fileio import check_writable

        try:
            check_writable(o.json_path)
        except OSError as exc:
            raise DBNetError(f"{o.json_path}: cannot write --json ({exc.strerror or exc})") from None
    samples, description = select_samples(o.dataset, o.data_root, o.split, o.holdout_from_train, o.seed, o.limit)
    header = f"{o.dataset} {description}: {plural(len(samples), 'image')}"

    if o.pred is not None:
        from dbcli.evaluate import evaluate_predictions

        result = evaluate_predictions(samples, o.pred, box_thresh=o.box_thresh, warn=warn)
        report = {"dataset": o.dataset, "split": description, "pred": str(o.pred), **result.to_dict()}
        _print_scores(out, f"{header}, predictions {o.pred}", result)
        _write_json(o.json_path, report, out)
        return report

    from dbcli.evaluate import EvalResult, SweepResult, evaluate_model, sweep_model

    model, settings = _load_model(o, warn)
    post, info = settings.post, model.info
    precision = info["dtype"]
    settings_line = (f"weights {info['weights']} ({info.get('arch')}) on {info['device']}"
                     f"{'' if precision == 'fp32' else ', ' + precision}; "
                     f"short side {settings.short_side}" + (f", max side {o.max_side}" if o.max_side else "") +
                     f"; {'polygons' if post.polygon else 'boxes'}, unclip {post.unclip_ratio:g}")

    common_args = (settings.short_side, settings.max_side, post)
    with progress_bar(err, "sweep" if o.sweep else "eval", len(samples), unit=None, transient=True) as progress:
        task = progress.add_task("images", total=len(samples))

        def advance(n: int) -> None:
            progress.update(task, advance=n)

        scored: EvalResult | SweepResult
        if o.sweep:
            scored = sweep_model(samples, model, *common_args, box_threshes, threshes, settings.batch_size,
                                 warn, advance, max_megapixels=settings.max_megapixels)
        else:
            scored = evaluate_model(samples, model, *common_args, settings.batch_size, warn, advance,
                                    max_megapixels=settings.max_megapixels)

    common = {"dataset": o.dataset, "split": description, "weights": info["weights"], "device": info["device"],
              "dtype": precision}
    if o.sweep:
        report = {**common, "sweep": scored.to_dict()}
        _print_sweep(out, f"{header}; {settings_line}", scored)
    else:
        report = {**common, **scored.to_dict()}
        _print_scores(out, f"{header}; {settings_line}; thresh {post.thresh:g}, box_thresh {post.box_thresh:g}",
                      scored)
    _write_json(o.json_path, report, out)
    return report


def _print_scores(console, title: str, result) -> None:
    from rich.table import Table

    s = result.scores
    console.print(title, soft_wrap=True)
    table = Table(show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("precision", f"{s.precision:.4f}")
    table.add_row("recall", f"{s.recall:.4f}")
    table.add_row("hmean", f"[bold]{s.hmean:.4f}[/bold]")
    table.add_row("ground truth (care)", str(s.num_gt))
    table.add_row("detections (care)", str(s.num_det))
    table.add_row("matched", str(s.num_matched))
    table.add_row("images scored", str(s.num_images))
    if result.skipped:
        table.add_row("images skipped (undecodable)", str(len(result.skipped)))
    if result.missing:
        table.add_row("images without predictions", str(len(result.missing)))
    table.add_row("images/s", f"{result.images_per_s:.2f}")
    console.print(table)


def _print_sweep(console, title: str, result) -> None:
    from rich.table import Table

    console.print(title, soft_wrap=True)
    console.print("hmean by box_thresh (rows) and thresh (columns):")
    table = Table()
    table.add_column("box_thresh")
    for t in result.thresholds:
        table.add_column(f"thresh {t:g}", justify="right")
    best = result.best
    for b in result.box_thresholds:
        cells = []
        for t in result.thresholds:
            row = next(r for r in result.rows if r["thresh"] == t and r["box_thresh"] == b)
            cell = f"{row['hmean']:.4f}"
            cells.append(f"[bold reverse]{cell}[/bold reverse]" if row is best else cell)
        table.add_row(f"{b:g}", *cells)
    console.print(table)
    n = best["num_images"]
    console.print(f"best: thresh {best['thresh']:g}, box_thresh {best['box_thresh']:g}: precision "
                  f"{best['precision']:.4f}, recall {best['recall']:.4f}, hmean {best['hmean']:.4f} "
                  f"({plural(n, 'image')}, {result.seconds:.1f} s, {n / max(result.seconds, 1e-9):.2f} images/s)")
    if best["num_matched"] == 0:
        console.print("no setting of the grid matched any ground truth: nothing to choose from")
    else:
        console.print(f"use: dbnet detect --thresh {best['thresh']:g} --box-thresh {best['box_thresh']:g}")
    if result.skipped:
        console.print(f"{plural(len(result.skipped), 'undecodable image')} skipped")


def _write_json(path, report: dict, console) -> None:
    if path is None:
        return
    from dbcli.fileio import atomic_write_json

    try:
        atomic_write_json(Path(path), report)
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write --json ({exc.strerror or exc})") from None
    console.print(f"figures written to {path}")
