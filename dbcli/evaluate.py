"""Evaluation on a dataset split (SPEC: "Evaluation"), for ``dbnet eval`` and for scripts.

* ``evaluate_model(samples, prob_fn, ...)``: runs a backend (``inference.TorchBackend`` or any
  ``prob_fn``) over the images, post-processes and scores with the ICDAR 2015 IoU protocol.
* ``evaluate_predictions(samples, predictions)``: scores a predictions file in ``dbnet detect``'s
  JSON schema without a model.
* ``sweep_model(samples, prob_fn, ...)`` / ``sweep_maps(items, ...)``: a grid over ``box_thresh``
  and ``thresh`` that runs the network ONCE per image and post-processes its probability map for
  every setting of the grid.

Images that cannot be decoded are reported through ``warn`` and skipped (their ground truth is not
counted); the result lists them in ``skipped``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dbcli.datasets import Sample
from dbcli.errors import DBNetError
from dbcli.imaging import DEFAULT_MAX_MEGAPIXELS, decode_image, inference_size
from dbcli.inference import ProbFn, detect_batch
from dbcli.metrics import ImageResult, Scores, evaluate_image, summarize
from dbcli.postprocess import CandidateCapWarning, Detection, PostConfig, boxes_from_prob_map

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
def _decode(sample: Sample, max_megapixels: float | None) -> tuple[np.ndarray, list[str]] | DBNetError:
    try:
        return decode_image(sample.image_path, sample.exif, max_megapixels)
    except DBNetError as exc:
        return exc


def iter_prob_maps(samples: Sequence[Sample], prob_fn: ProbFn, short_side: int = 736,
                   max_side: int | None = None, batch_size: int = 1, post: PostConfig = PostConfig(),
                   warn: Warn = _nowarn, skipped: list[str] | None = None, progress: Progress | None = None,
                   prefetch_threads: int = 2, max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
                   ) -> Iterator[tuple[Sample, np.ndarray, list[Detection], int, tuple[int, int]]]:
    """Yield ``(sample, prob_map, detections, capped, (height, width))`` per decodable image, in order.

    Runs ``inference.detect_batch`` (the code path of ``dbnet detect``): ``prob_map`` is at
    network-input resolution (a batch's padding cropped off), ``detections`` are post-processed with
    ``post`` in original-image pixels; ``capped`` counts the images of the batch that hit
    ``post.max_candidates`` (given with the batch's first image, 0 with the others: sums are exact).
    Images are decoded in background threads; a batch only holds images of the same network input
    size, so results do not depend on ``batch_size``. Undecodable images (and those over
    ``max_megapixels`` million pixels) are reported through ``warn``, appended to ``skipped`` and not
    yielded."""
    batch_size = max(1, int(batch_size))
    window = max(2 * batch_size, 4)

    def flush(batch):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dets, maps = detect_batch(prob_fn, [img for _, img in batch], short_side, max_side, post,
                                      return_maps=True)
        capped = _count_capped(caught)
        for k, ((sample, img), prob, det) in enumerate(zip(batch, maps, dets)):
            yield sample, prob, det, capped if k == 0 else 0, img.shape[:2]
        if progress is not None:
            progress(len(batch))

    with ThreadPoolExecutor(max_workers=max(1, prefetch_threads)) as pool:
        futures = []
        next_index = 0
        batch: list[tuple[Sample, np.ndarray]] = []
        batch_key = None
        for i in range(len(samples)):
            while next_index < len(samples) and next_index < i + window:
                futures.append(pool.submit(_decode, samples[next_index], max_megapixels))
                next_index += 1
            decoded = futures[i].result()
            futures[i] = None  # release the decoded image once consumed
            if isinstance(decoded, DBNetError):
                warn(f"skipping {decoded}")
                if skipped is not None:
                    skipped.append(str(samples[i].image_path))
                if progress is not None:
                    progress(1)
                continue
            image, notes = decoded
            for note in notes:
                warn(note)
            key = inference_size(image.shape[0], image.shape[1], short_side, max_side)
            if batch and (key != batch_key or len(batch) >= batch_size):
                yield from flush(batch)
                batch = []
            batch_key = key
            batch.append((samples[i], image))
        if batch:
            yield from flush(batch)


def _count_capped(caught) -> int:
    """How many of the caught warnings are post-processing's candidate-cap warning."""
    return sum(issubclass(w.category, CandidateCapWarning) for w in caught)


def _post(prob: np.ndarray, width: int, height: int, post: PostConfig) -> tuple[list[Detection], int]:
    """Post-process one map; also says whether (1) or not (0) the max_candidates cap was hit."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dets = boxes_from_prob_map(prob, width, height, post)
    return dets, min(1, _count_capped(caught))


def evaluate_model(samples: Sequence[Sample], prob_fn: ProbFn, short_side: int = 736,
                   max_side: int | None = None, post: PostConfig = PostConfig(), batch_size: int = 1,
                   warn: Warn = _nowarn, progress: Progress | None = None,
                   max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> EvalResult:
    """Detect with ``prob_fn`` on every sample and score against its ground truth."""
    started = time.perf_counter()
    skipped: list[str] = []
    results: list[ImageResult] = []
    capped = 0
    for sample, _, dets, hit, _ in iter_prob_maps(samples, prob_fn, short_side, max_side, batch_size,
                                                   post, warn, skipped, progress,
                                                   max_megapixels=max_megapixels):
        capped += hit
        results.append(evaluate_image(sample.polygons, sample.ignore, [d.points for d in dets]))
    if capped:
        warn(f"{capped} image(s) had more than {post.max_candidates} candidate regions; only the first "
             f"{post.max_candidates} were kept (--max-candidates raises the cap)")
    settings = {"short_side": short_side, "max_side": max_side, "batch_size": batch_size, **asdict(post)}
    return EvalResult(summarize(results), time.perf_counter() - started, skipped, capped=capped,
                      settings=settings)


# --- scoring a predictions file -------------------------------------------------------------------
def _is_number(value) -> bool:
    """A finite JSON number (``true`` and ``"12"`` are not; Python's json reads ``NaN`` as a float)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _points_array(points) -> np.ndarray | None:
    """``(K, 2)`` float64 from a list of at least 3 ``[x, y]`` pairs of finite numbers, else None."""
    if not isinstance(points, list) or len(points) < 3:
        return None
    if not all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p)) for p in points):
        return None
    return np.asarray(points, dtype=np.float64)


def load_predictions(path: str | Path) -> list[dict]:
    """Read a ``dbnet detect`` JSON file: ``{"images": [{"file": ..., "width": W, "height": H,
    "detections": [{"points": [[x, y], ...], "score": s}, ...]}, ...]}``. A bare list of image
    entries is accepted too, and a ``.jsonl`` file holds one image entry per line (``dbnet detect
    --format jsonl``). Returns the image entries, each checked; ``DBNetError`` names the file
    and the entry at fault."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DBNetError(f"{path}: no such predictions file") from None
    except UnicodeDecodeError as exc:
        raise DBNetError(f"{path}: not a JSON predictions file ({exc})") from None
    if path.suffix.lower() == ".jsonl":  # dbnet detect --format jsonl: one image entry per line
        data = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DBNetError(f"{path}:{lineno}: not a JSON line ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DBNetError(f"{path}: not a JSON predictions file ({exc})") from None
    entries = data.get("images") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise DBNetError(f"{path}: expected an object with an \"images\" list (dbnet detect's format)")
    checked = []
    for i, entry in enumerate(entries):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise DBNetError(f"{where}: each entry needs a \"file\" string")
        dets = entry.get("detections", [])
        if not isinstance(dets, list):
            raise DBNetError(f"{where} ({entry['file']}): \"detections\" must be a list")
        polygons, scores = [], []
        for j, det in enumerate(dets):
            points = det.get("points") if isinstance(det, dict) else det
            arr = _points_array(points)
            if arr is None:
                raise DBNetError(f"{where}.detections[{j}] ({entry['file']}): \"points\" must be a "
                                 "list of at least 3 [x, y] pairs of finite numbers")
            score = det.get("score", 1.0) if isinstance(det, dict) else 1.0
            if not _is_number(score):
                raise DBNetError(f"{where}.detections[{j}] ({entry['file']}): \"score\" must be a finite "
                                 f"number, got {json.dumps(score)}")
            polygons.append(arr)
            scores.append(float(score))
        checked.append({"file": entry["file"], "width": entry.get("width"), "height": entry.get("height"),
                        "polygons": polygons, "scores": scores})
    return checked


def _image_size(path: Path, exif: bool) -> tuple[int, int] | None:
    """(width, height) as decoded (EXIF orientation applied when ``exif``), from the header only."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            w, h = img.size
            if exif and img.getexif().get(0x0112) in (5, 6, 7, 8):
                w, h = h, w
            return w, h
    except Exception:
        return None


def match_predictions(samples: Sequence[Sample], entries: list[dict], source: str = "predictions"
                      ) -> tuple[list[dict | None], list[str]]:
    """For each sample, its prediction entry (or None). Entries are matched by resolved path, then
    by file name, then by file stem (case-insensitive). Returns (per-sample entries, files of
    entries that matched no sample). Two entries for the same image raise ``DBNetError``."""
    by_path: dict[str, int] = {}
    by_name: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        p = Path(e["file"])
        try:
            by_path.setdefault(str(p.resolve()), i)
        except OSError:
            pass
        by_name.setdefault(p.name.lower(), []).append(i)
        by_stem.setdefault(p.stem.lower(), []).append(i)
    used: dict[int, Path] = {}
    matched: list[dict | None] = []
    for s in samples:
        i = by_path.get(str(Path(s.image_path).resolve()))
        if i is None:
            for table, key in ((by_name, s.image_path.name.lower()), (by_stem, s.image_path.stem.lower())):
                candidates = table.get(key, [])
                if len(candidates) > 1:
                    files = ", ".join(entries[c]["file"] for c in candidates[:3])
                    raise DBNetError(f"{source}: several predictions could be {s.image_path.name} "
                                     f"({files}); write paths that identify the images")
                if candidates:
                    i = candidates[0]
                    break
        if i is not None and i in used:
            raise DBNetError(f"{source}: the prediction for {entries[i]['file']} matches both "
                             f"{used[i]} and {s.image_path}")
        if i is not None:
            used[i] = s.image_path
        matched.append(entries[i] if i is not None else None)
    unmatched = [e["file"] for i, e in enumerate(entries) if i not in used]
    return matched, unmatched


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
        self.results = {(t, b): [] for t in self.threshes for b in self.box_threshes}
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


def sweep_model(samples: Sequence[Sample], prob_fn: ProbFn, short_side: int = 736,
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
        warn(f"{acc.capped} post-processing pass(es) had more than {post.max_candidates} candidate regions; "
             "only the first were kept (--max-candidates raises the cap)")
    settings = {"short_side": short_side, "max_side": max_side, **asdict(post)}
    return acc.finish(seconds=time.perf_counter() - started, skipped=skipped, settings=settings)
