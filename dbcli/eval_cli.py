"""What ``dbnet eval`` does once its options are parsed: pick the images, the weights and the
post-processing settings, run ``dbcli.evaluate``, print rich tables and write ``--json``."""

from __future__ import annotations

import os

import sys
from pathlib import Path

from dbcli.datasets import DATASETS, load_samples, split_holdout
from dbcli.errors import DBNetError
from dbcli.imaging import DEFAULT_MAX_MEGAPIXELS, check_sides
from dbcli.postprocess import PostConfig, post_config_from

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


def post_config(weights: dict | None, dataset: str, thresh, box_thresh, unclip_ratio, polygon,
                max_candidates: int | None = None) -> PostConfig:
    """The weights file's ``postprocess`` entry, overridden by the options given. ``polygon``
    defaults to True on the curved-text datasets."""
    if polygon is None and dataset in CURVED_DATASETS:
        polygon = True
    return post_config_from((weights or {}).get("postprocess"), thresh=thresh, box_thresh=box_thresh,
                            unclip_ratio=unclip_ratio, polygon=polygon, max_candidates=max_candidates)


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


def run(dataset: str, data_root, split, weights_path, pred, short_side, max_side, thresh, box_thresh,
        unclip_ratio, polygon, device, precision, batch_size, limit, holdout_from_train, seed, sweep,
        sweep_thresh, sweep_box_thresh, allow_test_sweep, json_path, max_candidates=None,
        max_megapixels=DEFAULT_MAX_MEGAPIXELS) -> dict:
    from rich.console import Console

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/yellow] {message}", markup=True, soft_wrap=True)

    if pred is not None:
        model_only = {"--weights": weights_path, "--short-side": short_side, "--max-side": max_side,
                      "--thresh": thresh, "--unclip-ratio": unclip_ratio, "--polygon/--box": polygon,
                      "--device": device, "--precision": precision, "--batch-size": batch_size,
                      "--sweep": sweep or None, "--max-candidates": max_candidates}
        given = [name for name, value in model_only.items() if value is not None]
        if given:
            raise DBNetError(f"--pred scores a predictions file without a model; {', '.join(given)} "
                             "does not apply (--box-thresh filters the predictions by score)")
    effective_split = "train" if holdout_from_train is not None else (split or "test")
    if sweep and effective_split == "test" and not allow_test_sweep:
        raise DBNetError("--sweep picks thresholds and must not look at the test split; sweep on "
                         "validation images with --holdout-from-train 0.1 --seed 0 (what dbnet train "
                         "held out), or pass --allow-test-sweep to do it anyway")

    if sweep:
        if thresh is not None or box_thresh is not None:
            raise DBNetError("--sweep scores the grids of --sweep-thresh and --sweep-box-thresh; drop "
                             "--thresh / --box-thresh")
        threshes = parse_grid(sweep_thresh, "sweep-thresh")
        box_threshes = parse_grid(sweep_box_thresh, "sweep-box-thresh")

    if json_path is not None:
        from dbcli.fileio import check_writable

        try:
            check_writable(json_path)
        except OSError as exc:
            raise DBNetError(f"{json_path}: cannot write --json ({exc.strerror or exc})") from None
    samples, description = select_samples(dataset, data_root, split, holdout_from_train, seed, limit)
    header = f"{dataset} {description}: {len(samples)} images"

    if pred is not None:
        from dbcli.evaluate import evaluate_predictions

        result = evaluate_predictions(samples, pred, box_thresh=box_thresh, warn=warn)
        report = {"dataset": dataset, "split": description, "pred": str(pred), **result.to_dict()}
        _print_scores(out, f"{header}, predictions {pred}", result)
        _write_json(json_path, report, out)
        return report

    from dbcli.evaluate import evaluate_model, sweep_model

    precision = (precision or "fp32").lower()
    if weights_path is not None and Path(weights_path).suffix.lower() == ".onnx":
        from dbcli.detect import onnx_precision
        from dbcli.onnx_backend import OnnxBackend  # torch-free, usually faster on CPU

        onnx_precision(precision)
        backend = OnnxBackend(weights_path, device or "auto")
        weights = {"path": str(weights_path), "model": backend.model_config,
                   "postprocess": backend.postprocess, "short_side": backend.short_side}
    else:
        from dbcli.inference import TorchBackend
        from dbcli.weights import DEFAULT_ICDAR15_WEIGHTS, load_weights

        if weights_path is None and dataset == "icdar15" and not os.environ.get("DBNET_WEIGHTS"):
            weights_path = DEFAULT_ICDAR15_WEIGHTS  # the shipped file trained for it
        weights = load_weights(weights_path)
        overlap = _overlap_warning(weights, dataset, split, holdout_from_train, seed)
        if overlap:
            warn(overlap)
        backend = TorchBackend(weights, device or "auto", precision)
        if backend.note:
            warn(backend.note)
    post = post_config(weights, dataset, thresh, box_thresh, unclip_ratio, polygon, max_candidates)
    short_side = short_side or int(weights.get("short_side") or 736)
    check_sides(short_side, max_side)
    if not max_megapixels > 0:
        raise DBNetError(f"--max-megapixels must be positive, got {max_megapixels}")
    batch_size = batch_size or 1
    settings_line = (f"weights {weights['path']} ({weights['model'].get('arch')}) on {backend.device}"
                     f"{'' if precision == 'fp32' else ', ' + precision}; "
                     f"short side {short_side}" + (f", max side {max_side}" if max_side else "") +
                     f"; {'polygons' if post.polygon else 'boxes'}, unclip {post.unclip_ratio:g}")

    progress = _progress(err, "sweep" if sweep else "eval", len(samples))
    with progress:
        task = progress.add_task("images", total=len(samples))

        def advance(n: int) -> None:
            progress.update(task, advance=n)

        if sweep:
            result = sweep_model(samples, backend, short_side, max_side, post, box_threshes, threshes,
                                 batch_size, warn, advance, max_megapixels=max_megapixels)
        else:
            result = evaluate_model(samples, backend, short_side, max_side, post, batch_size, warn, advance,
                                    max_megapixels=max_megapixels)

    common = {"dataset": dataset, "split": description, "weights": weights["path"], "device": str(backend.device),
              "dtype": precision}
    if sweep:
        report = {**common, "sweep": result.to_dict()}
        _print_sweep(out, f"{header}; {settings_line}", result)
    else:
        report = {**common, **result.to_dict()}
        _print_scores(out, f"{header}; {settings_line}; thresh {post.thresh:g}, box_thresh {post.box_thresh:g}",
                      result)
    _write_json(json_path, report, out)
    return report


def _progress(console, label: str, total: int):
    import os

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
                    disable=not sys.stderr.isatty() and os.environ.get("DBNET_PROGRESS") != "1")


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
                  f"({n} images, {result.seconds:.1f} s, {n / max(result.seconds, 1e-9):.2f} images/s)")
    if best["num_matched"] == 0:
        console.print("no setting of the grid matched any ground truth: nothing to choose from")
    else:
        console.print(f"use: dbnet detect --thresh {best['thresh']:g} --box-thresh {best['box_thresh']:g}")
    if result.skipped:
        console.print(f"{len(result.skipped)} undecodable image(s) skipped")


def _write_json(path, report: dict, console) -> None:
    if path is None:
        return
    from dbcli.fileio import atomic_write_json

    try:
        atomic_write_json(Path(path), report)
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write --json ({exc.strerror or exc})") from None
    console.print(f"figures written to {path}")
