"""Evaluation on a dataset split (SPEC: "Evaluation"), for ``dbnet eval`` and for scripts.

* ``evaluate_model(samples, backend, ...)``: runs a backend (``dbcli.backends.Backend`` or a
  loaded ``Model``) through the engine of ``dbnet detect`` over the images, post-processes and
  scores with the ICDAR 2015 IoU protocol.
* ``evaluate_predictions(samples, predictions)``: scores a predictions file in ``dbnet detect``'s
  JSON schema without a model.
* ``sweep_model(samples, prob_fn, ...)`` / ``sweep_maps(items, ...)``: a grid over ``box_thresh``
  and ``thresh`` that runs the network ONCE per image and post-processes its probability map for
  every setting of the grid.

Images that cannot be decoded are reported through ``warn`` and skipped (their ground truth is not
counted); the result lists them in ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dbcli.backends import Backend, Model
from dbcli.datasets import Sample
from dbcli.engine import Failure, FileImage, Settings, run_pipeline
from dbcli.errors import DBNetError
from dbcli.imaging import DEFAULT_MAX_MEGAPIXELS
from dbcli.metrics import ImageMatch, Scores, evaluate_image, summarize
from dbcli.postprocess import Detection, PostConfig, detections_and_candidates
from dbcli.predictions import _image_size, load_predictions, match_predictions  # noqa: F401 (public here too)
from dbcli.progress import plural

Warn = Callable[[str], None]
Progress = Callable[[int], None]  # called with the number of images just finished

DEFAULT_BOX_THRESH_GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(11))  # 0.30 .. 0.80
DEFAULT_THRESH_GRID = (0.2, 0.25, 0.3, 0.35)


def _nowarn(message: str) -> None:
    pass


@dataclass
class EvalResult:
    scores: Scores
    seconds: float  # wall time of the whole run (decoding, network, post-processing, matching)
    skipped: list[str] = field(default_factory=list)  # images that could not be decoded
    missing: list[str] = field(default_factory=list)  # --pred: ground-truth images without predictions
    unmatched: list[str] = field(default_factory=list)  # --pred: predictions of no ground-truth image
    capped: int = 0  # images whose candidate regions hit max_candidates
    settings: dict = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.scores.num_images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(), "images_per_s": self.images_per_s, "seconds": self.seconds,
                "skipped": self.skipped, "missing_predictions": self.missing,
                "unmatched_predictions": self.unmatched, "capped_images": self.capped,
                "settings": self.settings}


# --- running a backend ----------------------------------------------------------------------------
def _engine_settings(short_side: int, max_side: int | None, batch_size: int, post: PostConfig,
                     max_megapixels: float | None) -> Settings:
    return Settings(short_side, max_side, post, max(1, int(batch_size)), True, max_megapixels,
                    sort="none")  # scoring needs no reading order


def iter_prob_maps(samples: Sequence[Sample], prob_fn: Backend | Model, short_side: int = 736,
                   max_side: int | None = None, batch_size: int = 1, post: PostConfig = PostConfig(),
                   warn: Warn = _nowarn, skipped: list[str] | None = None, progress: Progress | None = None,
                   max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
                   ) -> Iterator[tuple[Sample, np.ndarray, list[Detection], int, tuple[int, int]]]:
    """Yield ``(sample, prob_map, detections, capped, (height, width))`` per decodable image, in order.

    Runs ``dbcli.engine.run_pipeline`` (the engine of ``dbnet detect``) with ``prob_fn`` (a backend,
    or a loaded ``Model``): ``prob_map`` is at network-input resolution, ``detections`` are
    post-processed with ``post`` in original-image pixels; ``capped`` is 1 when the image hit
    ``post.max_candidates``, else 0. Undecodable images (and those over ``max_megapixels`` million
    pixels) are reported through ``warn``, appended to ``skipped`` and not yielded."""
    model = prob_fn if isinstance(prob_fn, Model) else Model(prob_fn, {})
    settings = _engine_settings(short_side, max_side, batch_size, post, max_megapixels)
    sources = [FileImage(Path(s.image_path), s.exif) for s in samples]
    done = (lambda: progress(1)) if progress is not None else None
    for item in run_pipeline(sources, model, settings, with_prob=True, on_done=done):
        if isinstance(item, Failure):
            warn(f"skipping {item.message}")
            if skipped is not None:
                skipped.append(str(samples[item.index].image_path))
            continue
        for note in item.notes:
            warn(note)
        assert item.prob is not None
        yield samples[item.index], item.prob, item.detections, int(item.capped), (item.height, item.width)


def _post(prob: np.ndarray, width: int, height: int, post: PostConfig) -> tuple[list[Detection], int]:
    """Post-process one map; also says whether (1) or not (0) the max_candidates cap was hit."""
    dets, candidates = detections_and_candidates(prob, width, height, post)
    return dets, int(candidates > post.max_candidates)


def evaluate_model(samples: Sequence[Sample], prob_fn: Backend | Model, short_side: int = 736,
                   max_side: int | None = None, post: PostConfig = PostConfig(), batch_size: int = 1,
                   warn: Warn = _nowarn, progress: Progress | None = None,
                   max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> EvalResult:
    """Detect with ``prob_fn`` on every sample and score against its ground truth."""
    started = time.perf_counter()
    skipped: list[str] = []
    results: list[ImageMatch] = []
    capped = 0
    for sample, _, dets, hit, _ in iter_prob_maps(samples, prob_fn, short_side, max_side, batch_size,
                                                   post, warn, skipped, progress,
                                                   max_megapixels=max_megapixels):
        capped += hit
        results.append(evaluate_image(sample.polygons, sample.ignore, [d.points for d in dets]))
    if capped:
        warn(f"{plural(capped, 'image')} had more than {post.max_candidates} candidate regions; only the first "
             f"{post.max_candidates} were kept (--max-candidates raises the cap)")
    settings = {"short_side": short_side, "max_side": max_side, "batch_size": batch_size, **asdict(post)}
    return EvalResult(summarize(results), time.perf_counter() - started, skipped, capped=capped,
                      settings=settings)


# --- scoring a predictions file -------------------------------------------------------------------
def evaluate_predictions(samples: Sequence[Sample], predictions: str | Path | list[dict],
                         box_thresh: float | None = None, warn: Warn = _nowarn) -> EvalResult:
    """Score predictions (a file path or ``load_predictions`` entries) against ``samples``.

    Ground-truth images with no prediction entry count as images with no detections (and are
    reported). ``box_thresh``: drop detections whose score is below it (``None``: keep all)."""
    started = time.perf_counter()
    source = str(predictions) if isinstance(predictions, (str, Path)) else "predictions"
    entries = load_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions
    matched, unmatched = match_predictions(samples, entries, source)
    results, missing, size_mismatch = [], [], []
    for sample, entry in zip(samples, matched):
        if entry is None:
            missing.append(str(sample.image_path))
            dets = []
        else:
            dets = [p for p, sc in zip(entry["polygons"], entry["scores"])
                    if box_thresh is None or sc >= box_thresh]
            if entry.get("width") and entry.get("height"):
                size = _image_size(sample.image_path, sample.exif)
                if size is not None and size != (entry["width"], entry["height"]):
                    size_mismatch.append(f"{sample.image_path.name} ({entry['width']}x{entry['height']} "
                                         f"predicted, {size[0]}x{size[1]} on disk)")
        results.append(evaluate_image(sample.polygons, sample.ignore, dets))
    if missing:
        shown = ", ".join(Path(m).name for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        warn(f"{len(missing)} of {len(samples)} ground-truth images have no predictions in {source} "
             f"(counted as no detections): {shown}")
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        warn(f"{len(unmatched)} predictions match no ground-truth image of the split (ignored): {shown}")
    if size_mismatch:
        warn(f"{len(size_mismatch)} predictions were made on images of another size than the dataset's: "
             + ", ".join(size_mismatch[:3]))
    return EvalResult(summarize(results), time.perf_counter() - started, missing=missing,
                      unmatched=unmatched, settings={"pred": source, "box_thresh": box_thresh})


# --- threshold sweep ------------------------------------------------------------------------------
@dataclass
class SweepResult:
    rows: list[dict]  # one per (thresh, box_thresh): thresh, box_thresh and the Scores fields
    best: dict  # the row with the highest hmean (ties: higher precision, then the earlier row)
    thresholds: tuple[float, ...]
    box_thresholds: tuple[float, ...]
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"best": self.best, "rows": self.rows, "thresh_grid": list(self.thresholds),
                "box_thresh_grid": list(self.box_thresholds), "seconds": self.seconds,
                "skipped": self.skipped, "settings": self.settings}


def _check_grid(values: Iterable[float], name: str) -> tuple[float, ...]:
    grid = tuple(float(v) for v in values)
    if not grid:
        raise DBNetError(f"empty {name} grid")
    if any(not 0.0 <= v <= 1.0 for v in grid):
        raise DBNetError(f"{name} values must lie in [0, 1]: {grid}")
    return grid


class _SweepAccumulator:
    def __init__(self, threshes, box_threshes, post: PostConfig):
        self.threshes = _check_grid(threshes, "thresh")
        self.box_threshes = _check_grid(box_threshes, "box_thresh")
        self.post = post
        self.results: dict[tuple[float, float], list[ImageMatch]] = {
            (t, b): [] for t in self.threshes for b in self.box_threshes}
        self.capped = 0

    def first_config(self) -> PostConfig:
        return replace(self.post, thresh=self.threshes[0], box_thresh=min(self.box_threshes))

    def add(self, gt_polygons, gt_ignore, prob: np.ndarray, width: int, height: int,
            first: tuple[list[Detection], int] | None = None) -> None:
        """``first``: the detections (and capped flag) of ``first_config()`` when already made."""
        lowest = min(self.box_threshes)
        for k, t in enumerate(self.threshes):
            # box_thresh only filters regions by their score (the score test precedes every other
            # step of boxes_from_prob_map), so one pass at the lowest box_thresh serves them all.
            if k == 0 and first is not None:
                dets, hit = first
            else:
                dets, hit = _post(prob, width, height, replace(self.post, thresh=t, box_thresh=lowest))
            self.capped += hit
            for b in self.box_threshes:
                kept = [d.points for d in dets if d.score >= b]
                self.results[(t, b)].append(evaluate_image(gt_polygons, gt_ignore, kept))

    def finish(self, **extra) -> SweepResult:
        rows = [{"thresh": t, "box_thresh": b, **summarize(self.results[(t, b)]).to_dict()}
                for t in self.threshes for b in self.box_threshes]
        best = max(enumerate(rows), key=lambda ir: (ir[1]["hmean"], ir[1]["precision"], -ir[0]))[1]
        return SweepResult(rows, best, self.threshes, self.box_threshes, **extra)


def sweep_maps(items: Iterable[tuple[list, list[bool], np.ndarray, int, int]],
               box_threshes: Iterable[float] = DEFAULT_BOX_THRESH_GRID,
               threshes: Iterable[float] = DEFAULT_THRESH_GRID, post: PostConfig = PostConfig()
               ) -> SweepResult:
    """Sweep over probability maps already computed: ``items`` yields ``(gt_polygons, gt_ignore,
    prob_map, orig_width, orig_height)`` per image. Every other post-processing setting comes from
    ``post``."""
    started = time.perf_counter()
    acc = _SweepAccumulator(threshes, box_threshes, post)
    for gt_polygons, gt_ignore, prob, width, height in items:
        acc.add(gt_polygons, gt_ignore, prob, width, height)
    return acc.finish(seconds=time.perf_counter() - started, settings=asdict(post))


def sweep_model(samples: Sequence[Sample], prob_fn: Backend | Model, short_side: int = 736,
                max_side: int | None = None, post: PostConfig = PostConfig(),
                box_threshes: Iterable[float] = DEFAULT_BOX_THRESH_GRID,
                threshes: Iterable[float] = DEFAULT_THRESH_GRID, batch_size: int = 1,
                warn: Warn = _nowarn, progress: Progress | None = None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> SweepResult:
    """Run the network once per image and score every (thresh, box_thresh) of the grid on its
    probability map. Meant for a validation split (e.g. the images ``split_holdout`` keeps out of
    training), never the test split."""
    started = time.perf_counter()
    acc = _SweepAccumulator(threshes, box_threshes, post)
    skipped: list[str] = []
    for sample, prob, dets, hit, (h, w) in iter_prob_maps(samples, prob_fn, short_side, max_side,
                                                          batch_size, acc.first_config(), warn, skipped,
                                                          progress, max_megapixels=max_megapixels):
        acc.add(sample.polygons, sample.ignore, prob, w, h, first=(dets, hit))
    if acc.capped:
        passes = plural(acc.capped, "post-processing pass", "post-processing passes")
        warn(f"{passes} had more than {post.max_candidates} candidate regions; "
             "only the first were kept (--max-candidates raises the cap)")
    settings = {"short_side": short_side, "max_side": max_side, **asdict(post)}
    return acc.finish(seconds=time.perf_counter() - started, skipped=skipped, settings=settings)
