"""Threshold sweeps: a grid over ``box_thresh`` and ``thresh`` that runs the network ONCE per image
and post-processes its probability map for every setting of the grid (``sweep_model``), or sweeps
maps already computed (``sweep_maps``). The grids' defaults are ``dbcli.defaults.SWEEP_THRESH`` and
``SWEEP_BOX_THRESH``, read by ``parse_grid``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dbcli import defaults
from dbcli.backends.base import Backend, Model
from dbcli.data.sample import Sample
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.evaluation.metrics import ImageMatch, evaluate_image, summarize
from dbcli.evaluation.scoring import Progress, Warn, _nowarn, iter_prob_maps
from dbcli.postprocess.boxes import Detection, PostConfig, detections_and_candidates
from dbcli.progress import plural

MAX_GRID = 1000  # the most values a start:stop:step grid may hold


def _grid_values(text: str) -> list[float]:
    if ":" not in text:
        return [float(v) for v in text.split(",") if v.strip()]
    start, stop, step = (float(v) for v in text.split(":"))
    if step <= 0 or stop < start:
        raise ValueError
    if (stop - start) / step > MAX_GRID:  # (a step of 1e-12 would list 4e11 values)
        raise OverflowError
    count = int(round((stop - start) / step)) + 1
    return [round(start + i * step, 6) for i in range(count) if start + i * step <= stop + 1e-9]


def parse_grid(text: str, name: str) -> tuple[float, ...]:
    """``"0.3:0.8:0.05"`` (start:stop:step, stop included) or ``"0.2,0.25,0.3"``; ``name`` is the option
    named in the ``DBNetError`` for a malformed grid or a value outside [0, 1]."""
    text = text.strip()
    try:
        values = _grid_values(text)
    except OverflowError:
        raise DBNetError(f"--{name}: a grid of more than {MAX_GRID} values, got {text!r}") from None
    except ValueError:
        raise DBNetError(f"--{name}: expected start:stop:step or a comma-separated list, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise DBNetError(f"--{name}: values must lie in [0, 1], got {text!r}")
    return tuple(values)


DEFAULT_THRESH_GRID = parse_grid(defaults.SWEEP_THRESH, "sweep-thresh")
DEFAULT_BOX_THRESH_GRID = parse_grid(defaults.SWEEP_BOX_THRESH, "sweep-box-thresh")


@dataclass
class SweepResult:
    rows: list[dict]  # one per (thresh, box_thresh): thresh, box_thresh and the Scores fields
    best: dict  # the row with the highest hmean (ties: higher precision, then the earlier row)
    thresholds: tuple[float, ...]
    box_thresholds: tuple[float, ...]
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    # (thresh, box_thresh) -> the per-image matches behind its row (for per-image statistics)
    matches: dict = field(default_factory=dict, repr=False)

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


def _post(prob: np.ndarray, width: int, height: int, post: PostConfig) -> tuple[list[Detection], int]:
    """Post-process one map; also says whether (1) or not (0) the max_candidates cap was hit."""
    dets, candidates = detections_and_candidates(prob, width, height, post)
    return dets, int(candidates > post.max_candidates)


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
        return SweepResult(rows, best, self.threshes, self.box_threshes, matches=self.results, **extra)


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


def sweep_model(samples: Sequence[Sample], model: Backend | Model, *, settings: Settings,
                box_threshes: Iterable[float] = DEFAULT_BOX_THRESH_GRID,
                threshes: Iterable[float] = DEFAULT_THRESH_GRID, warn: Warn = _nowarn,
                progress: Progress | None = None) -> SweepResult:
    """Run the network once per image and score every (thresh, box_thresh) of the grid on its
    probability map; the other settings (post-processing included) are ``settings``'. Meant for a
    validation split (e.g. the images ``split_holdout`` keeps out of training), never the test split."""
    started = time.perf_counter()
    post = settings.post
    acc = _SweepAccumulator(threshes, box_threshes, post)
    skipped: list[str] = []
    first = replace(settings, post=acc.first_config())
    for sample, prob, dets, hit, (h, w) in iter_prob_maps(samples, model, settings=first, warn=warn,
                                                          skipped=skipped, progress=progress):
        acc.add(sample.polygons, sample.ignore, prob, w, h, first=(dets, hit))
    if acc.capped:
        passes = plural(acc.capped, "post-processing pass", "post-processing passes")
        warn(f"{passes} had more than {post.max_candidates} candidate regions; "
             "only the first were kept (--max-candidates raises the cap)")
    figures = {"short_side": settings.short_side, "max_side": settings.max_side, **asdict(post)}
    return acc.finish(seconds=time.perf_counter() - started, skipped=skipped, settings=figures)
