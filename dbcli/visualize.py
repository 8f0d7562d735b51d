"""``dbnet visualize``: detected polygons drawn over each image (or PDF page) with their scores, or
numbered in reading order, saved as PNG; with ``maps``, also the probability and threshold maps as
colour heatmaps beside the image.

Detections come from a predictions file written by ``dbnet detect`` (JSON or JSONL, numbered in
its order) or, without one, from running the model (the same pipeline as ``dbnet detect``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dbcli.backends import Model
from dbcli.engine import Failure, Settings, run_pipeline
from dbcli.errors import DBNetError
from dbcli.fileio import atomic_write_bytes
from dbcli.inputs import expand_inputs, output_keys
from dbcli.pdf import DEFAULT_DPI
from dbcli.predictions import PredictionIndex, load_predictions  # noqa: F401 (public here too)
from dbcli.progress import plural, progress_bar, warn

BOX_COLOUR = (0, 255, 0)  # RGB
TEXT_COLOUR = (0, 0, 0)


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive ends)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_place(box: Rect, size: tuple[int, int], width: int, height: int, taken: list[Rect],
                 others: list[Rect], beside: bool = False) -> Rect | None:
    """Where a label of ``size`` (w, h) goes for the detection whose bounding box is ``box``: just
    above it, else just below it (with ``beside``, else left of it, as line numbers sit), never over
    another detection (whose text it would hide) nor over a label already placed; None when no spot
    is free (the outline is still drawn)."""
    tw, th = size
    x = min(max(box[0], 0), max(0, width - tw))
    spots = [(x, box[1] - th), (x, box[3])] + ([(box[0] - tw - 1, box[1])] if beside else [])
    for x0, y0 in spots:
        spot = (x0, y0, x0 + tw, y0 + th)
        if x0 < 0 or y0 < 0 or spot[2] > width or spot[3] > height:
            continue
        if not any(_overlaps(spot, r) for r in taken) and not any(_overlaps(spot, r) for r in others):
            return spot
    return None


def draw_detections(image: np.ndarray, detections: Sequence[tuple[np.ndarray, float]], numbers: bool = False
                    ) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` RGB image with each closed polygon drawn and its score (or, with
    ``numbers``, its position in ``detections`` from 1: the reading order, as crop files are
    numbered) written just above it (or below it). On a dense page a score that would cover another
    detection's text or another label is left out; a number then goes inside its box's corner."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 300))
    font_scale = max(0.35, min(h, w) / 900)
    boxes: list[Rect | None] = []
    for points, _ in detections:
        outline = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(outline) < 2:
            boxes.append(None)
            continue
        cv2.polylines(out, [outline], True, BOX_COLOUR, thickness, cv2.LINE_AA)
        x0, y0 = outline.reshape(-1, 2).min(axis=0)
        x1, y1 = outline.reshape(-1, 2).max(axis=0)
        boxes.append((int(x0), int(y0), int(x1) + 1, int(y1) + 1))
    taken: list[Rect] = []
    for k, (box, (_, score)) in enumerate(zip(boxes, detections)):  # labels over all outlines
        if box is None:
            continue
        label = str(k + 1) if numbers else f"{score:.2f}"
        scale = min(font_scale, max(0.3, (box[3] - box[1]) / 36))  # small text: a small label
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        others = [r for j, r in enumerate(boxes) if j != k and r is not None]
        spot = _label_place(box, (tw + 2, th + base + 3), w, h, taken, others, beside=numbers)
        if spot is None and numbers:  # a number must not go missing: inside the box's top-left corner
            x0, y0 = min(max(box[0], 0), max(0, w - tw - 2)), min(max(box[1], 0), max(0, h - th - base - 3))
            spot = (x0, y0, x0 + tw + 2, y0 + th + base + 3)
        if spot is None:
            continue
        taken.append(spot)
        cv2.rectangle(out, (spot[0], spot[1]), (spot[2] - 1, spot[3] - 1), BOX_COLOUR, -1)
        cv2.putText(out, label, (spot[0] + 1, spot[1] + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    TEXT_COLOUR, 1, cv2.LINE_AA)
    return out


def heatmap(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """A [0, 1] map resized to ``width`` x ``height`` as an RGB colour image (turbo colour map)."""
    m = cv2.resize(np.clip(values, 0, 1).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.round(m * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    return cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)


def _with_header(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel under a white strip with its caption (so the caption never hides the image)."""
    scale = max(0.4, panel.shape[0] / 700)
    (_, th), base = cv2.getTextSize("Apg", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)  # same height for all
    strip = np.full((th + base + 8, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def maps_panel(overlay: np.ndarray, prob: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    """[image with detections | probability map | threshold map], all at the image's size, each
    under a caption strip."""
    h, w = overlay.shape[:2]
    panels = [_with_header(overlay, "detections"), _with_header(heatmap(prob, w, h), "probability map P"),
              _with_header(heatmap(thresh, w, h), "threshold map T")]
    sep = np.full((panels[0].shape[0], max(2, w // 200), 3), 255, np.uint8)
    return np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DBNetError(f"{path}: PNG encoding failed")
    try:
        return atomic_write_bytes(path, data.tobytes())
    except OSError as exc:
        raise DBNetError(f"{path}: cannot write ({exc.strerror or exc})") from None


@dataclass
class VisualizeSummary:
    written: list[Path]
    failed: int


def visualize(inputs: Sequence[str | os.PathLike], out_dir: str | Path, pred: str | Path | None = None,
              maps: bool = False, model: Model | None = None, settings: Settings | None = None, *,
              console=None, numbers: bool = False, dpi: float = DEFAULT_DPI) -> VisualizeSummary:
    """Write ``<key>.png`` (detections drawn; ``numbers``: numbered in order) and, with ``maps``,
    ``<key>_maps.png`` for each input into ``out_dir`` (``key``: ``dbcli.inputs.output_keys``, e.g.
    ``photo`` or ``report_p3`` for a PDF page rendered at ``dpi``). ``model`` is needed without
    ``pred`` and for ``maps`` (torch backend)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    settings = settings or Settings()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DBNetError(f"{out_dir}: exists and is not a directory")
    if (pred is None or maps) and model is None:
        raise DBNetError("visualize needs a model (--weights) without --pred or with --maps")
    if maps and model is not None and model.maps_fn is None:
        raise DBNetError("--maps needs the torch backend (an ONNX export holds only the probability map)")
    index = PredictionIndex(load_predictions(pred), str(pred)) if pred is not None else None

    paths, problems = expand_inputs(inputs, dpi)
    for problem in problems:
        warn(console, problem)
    if not paths:
        raise DBNetError("no image to draw: " + "; ".join(problems or ["no INPUT given"]))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DBNetError(f"{out_dir}: cannot create ({exc.strerror or exc})") from None
    run_model = model if (pred is None or maps) else None
    written: list[Path] = []
    failed, keys = len(problems), output_keys(paths)
    with progress_bar(console, "visualize", len(paths)) as bar:
        task = bar.add_task("visualize", total=len(paths))
        for item in run_pipeline(paths, run_model, settings, keep_images=True, with_maps=maps,
                                 on_done=lambda: bar.advance(task)):
            if isinstance(item, Failure):
                failed += 1
                warn(console, f"{item.message}; skipped")
                continue
            for note in item.messages():
                warn(console, note)
            dets = [(d.points, d.score) for d in item.detections]
            if index is not None:
                try:
                    entry = index.find(Path(item.file))
                except DBNetError as exc:
                    failed += 1
                    warn(console, f"{item.file}: {exc}; skipped")
                    continue
                if entry is None:
                    failed += 1
                    warn(console, f"{item.file}: no entry in {pred}; skipped")
                    continue
                if (entry.get("width"), entry.get("height")) != (item.width, item.height):
                    warn(console, f"{item.file}: {pred} gives {entry.get('width')}x{entry.get('height')} "
                                  f"but the image is {item.width}x{item.height} (EXIF orientation? see "
                                  "--no-exif); drawn as they are")
                dets = list(zip(entry["polygons"], entry["scores"]))  # checked by load_predictions
            assert item.image is not None  # (keep_images)
            overlay = draw_detections(item.image, dets, numbers)
            target = out_dir / f"{keys[item.index]}.png"
            written.append(write_png(target, overlay))
            if maps:
                assert item.prob is not None and item.thresh is not None  # (with_maps)
                written.append(write_png(target.with_name(target.stem + "_maps.png"),
                                         maps_panel(overlay, item.prob, item.thresh)))
    if not written:
        raise DBNetError(f"nothing could be drawn ({plural(failed, 'input')} failed)")
    return VisualizeSummary(written, failed)
