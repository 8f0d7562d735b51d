"""``dbnet visualize``'s work: detected polygons drawn over each image (or PDF page) with their
scores, or numbered in reading order, saved as PNG; with ``maps``, also the probability and
threshold maps as colour heatmaps beside the image (``dbcli.outputs.drawing``).

Detections come from running the model (the engine of ``dbnet detect``: ``model_detections``) or,
with ``pred``, from a predictions file written by ``dbnet detect`` (JSON or JSONL, numbered in its
order: ``file_detections``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.evaluation.predictions import PredictionIndex, load_predictions
from dbcli.outputs.atomic import acquire_lock, release_lock
from dbcli.outputs.drawing import draw_detections, maps_panel, write_png
from dbcli.outputs.paths import Protected
from dbcli.outputs.targets import check_visualize_outputs, drawing_paths
from dbcli.outputs.text_drawing import draw_text
from dbcli.progress import plural, progress_bar, warn
from dbcli.weights import shipped_files
from dbcli.workflows.inputs import expand_inputs, output_keys, output_targets

Drawn = list[tuple[np.ndarray, float]]  # (points, score) per detection, in drawing order


@dataclass
class VisualizeSummary:
    written: list[Path]
    failed: int


def _check_request(pred: str | Path | None, maps: bool, model: Model | None) -> None:
    if (pred is None or maps) and model is None:
        raise DBNetError("visualize needs a model (--weights) without --pred or with --maps")
    if maps and model is not None and model.maps_fn is None:
        raise DBNetError("--maps needs the torch backend (an ONNX export holds only the probability map)")


def model_detections(item: ImageRecord) -> Drawn:
    """The detections the model found in ``item``."""
    return [(d.points, d.score) for d in item.detections]


def file_detections(item: ImageRecord, index: PredictionIndex, pred: str | Path, console: Any) -> Drawn | None:
    """``item``'s detections in the predictions file ``pred`` (its ``index``), or None (said on
    ``console``) when the file has none for it. A size that differs from the image's is said too."""
    try:
        entry = index.find(Path(item.file))
    except DBNetError as exc:
        warn(console, f"{item.file}: {exc}; skipped")
        return None
    if entry is None:
        warn(console, f"{item.file}: no entry in {pred}; skipped")
        return None
    if (entry.get("width"), entry.get("height")) != (item.width, item.height):
        warn(console, f"{item.file}: {pred} gives {entry.get('width')}x{entry.get('height')} but the image is "
                      f"{item.width}x{item.height} (EXIF orientation? see --no-exif); drawn as they are")
    return list(zip(entry["polygons"], entry["scores"]))  # checked by load_predictions


def _draw(item: ImageRecord, dets: Drawn, targets: list[Path], numbers: bool, maps: bool, text: bool = False
          ) -> list[Path]:
    """``targets[0]`` (the drawing; ``text``: each detection's text beside its box,
    ``dbcli.outputs.text_drawing``) and, with ``maps``, ``targets[1]`` (``drawing_paths``)."""
    assert item.image is not None  # (keep_images)
    if text:
        overlay = draw_text(item.image, [(d.points, d.text or "") for d in item.detections])
    else:
        overlay = draw_detections(item.image, dets, numbers)
    written = [write_png(targets[0], overlay)]
    if maps:
        assert item.prob is not None and item.thresh is not None  # (with_maps)
        written.append(write_png(targets[1], maps_panel(overlay, item.prob, item.thresh)))
    return written


def _expand(inputs: Sequence[str | os.PathLike], dpi: float, console: Any) -> tuple[list, list[str]]:
    paths, problems = expand_inputs(inputs, dpi)
    for problem in problems:
        warn(console, problem)
    if not paths:
        raise DBNetError("no image to draw: " + "; ".join(problems or ["no INPUT given"]))
    return paths, problems


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DBNetError(f"{out_dir}: cannot create ({exc.strerror or exc})") from None


def _lock_folder(out_dir: Path) -> Path:
    """``out_dir`` held by this run (``<out_dir>.lock``, the lock of ``dbnet detect`` and ``train``):
    a second ``visualize`` into it is refused naming the live run. Raises ``DBNetError``."""
    try:
        return acquire_lock(os.path.abspath(out_dir))
    except OSError as exc:
        raise DBNetError(f"{out_dir}: cannot create ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class DrawPlan:
    """What drawing one image needs: the output folder and each input's output key, ``maps`` and
    ``numbers`` (as ``visualize_files``), the paths a drawing must never replace, the predictions
    file (``pred``) and its ``index`` (None: the model's detections), where warnings go and ``text``
    (the model's detections drawn with their text)."""

    out_dir: Path
    keys: list[str]
    maps: bool
    numbers: bool
    protected: Protected
    index: PredictionIndex | None
    pred: str | Path | None
    console: Any
    text: bool = False


def draw_item(item: ImageRecord | Failure, plan: DrawPlan) -> list[Path] | None:
    """The drawing(s) of one pipeline result (``_draw``), after its notes are said on the console;
    None (said there too) when it failed or has no detections to draw in ``plan.pred``."""
    if isinstance(item, Failure):
        warn(plan.console, f"{item.message}; skipped")
        return None
    for note in item.messages():
        warn(plan.console, note)
    dets: Drawn | None = (model_detections(item) if plan.index is None
                          else file_detections(item, plan.index, plan.pred or "", plan.console))
    if dets is None:
        return None
    targets = drawing_paths(plan.out_dir, plan.keys[item.index], plan.maps)
    for target in targets:  # (an input reached by a new link since the check)
        plan.protected.check(target, "--out", plan.out_dir, "the drawing")
    return _draw(item, dets, targets, plan.numbers, plan.maps, plan.text and plan.index is None)


def draw_all(paths: list, model: Model | None, settings: Settings, plan: DrawPlan) -> tuple[list[Path], int]:
    """Every input of ``paths`` through the pipeline (``model`` None: decode only) and drawn
    (``draw_item``) under a progress bar: the files written and the count of inputs that failed."""
    written: list[Path] = []
    failed = 0
    with progress_bar(plan.console, "visualize", len(paths)) as bar:
        task = bar.add_task("visualize", total=len(paths))
        for item in run_pipeline(paths, model, settings, keep_images=True, with_maps=plan.maps,
                                 on_done=lambda: bar.advance(task)):
            drawn = draw_item(item, plan)
            if drawn is None:
                failed += 1
            else:
                written += drawn
    return written, failed


def visualize_files(inputs: Sequence[str | os.PathLike], out_dir: str | Path, pred: str | Path | None = None,
                    maps: bool = False, model: Model | None = None, settings: Settings | None = None, *,
                    console: Any = None, numbers: bool = False, dpi: float = defaults.DPI) -> VisualizeSummary:
    """Write ``<key>.png`` (detections drawn; ``numbers``: numbered in order) and, with ``maps``,
    ``<key>_maps.png`` for each input into ``out_dir`` (``settings.text``: the text read in each region
written beside it instead of its score) (``key``: ``dbcli.workflows.inputs.output_keys``,
    e.g. ``photo`` or ``report_p3`` for a PDF page rendered at ``dpi``). ``model`` is needed without
    ``pred`` and for ``maps`` (torch backend). A drawing never replaces an input, ``pred`` or a
    weights file: that is refused before any work (``dbcli.outputs.targets.check_visualize_outputs``)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    settings = settings or Settings()
    out_dir = Path(out_dir)
    _check_request(pred, maps, model)
    if model is not None and model.note and (pred is None or maps):  # (e.g. an export kept in memory)
        warn(console, model.note)
    index = PredictionIndex(load_predictions(pred), str(pred)) if pred is not None else None
    paths, problems = _expand(inputs, dpi, console)
    run_model = model if (pred is None or maps) else None
    keys = output_keys(paths)
    protected = check_visualize_outputs(out_dir, output_targets(paths, keys), maps=maps, pred=pred,
                                        weights=[model.info.get("weights") if model is not None else None],
                                        shipped=shipped_files())
    lock = _lock_folder(out_dir)
    try:
        _make_folder(out_dir)
        plan = DrawPlan(out_dir, keys, maps, numbers, protected, index, pred, console, settings.text and pred is None)
        written, failed = draw_all(paths, run_model, settings, plan)
    finally:
        release_lock(lock)
    failed += len(problems)
    if not written:
        raise DBNetError(f"nothing could be drawn ({plural(failed, 'input')} failed)")
    return VisualizeSummary(written, failed)
