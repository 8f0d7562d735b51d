"""Scoring on a dataset split (SPEC: "Evaluation"), for ``dbnet eval``, the trainer's validation and
scripts.

* ``evaluate_model(samples, model, settings=...)``: runs a backend (``dbcli.backends.base.Backend``
  or a loaded ``Model``) through the engine of ``dbnet detect`` over the images and scores the
  detections with the ICDAR 2015 IoU protocol (``dbcli.evaluation.metrics``).
* ``evaluate_predictions(samples, predictions)``: scores a predictions file in ``dbnet detect``'s
  JSON schema without a model.
* ``iter_prob_maps``: the engine's probability maps and detections per sample (the threshold sweep,
  ``dbcli.evaluation.sweep``, reads them).

Images that cannot be decoded are reported through ``warn`` and skipped (their ground truth is not
counted); the result lists them in ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from dbcli.backends.base import Backend, Model
from dbcli.data.sample import Sample
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure
from dbcli.engine.settings import Settings
from dbcli.engine.sources import FileImage
from dbcli.evaluation.metrics import ImageMatch, Scores, evaluate_image, summarize
from dbcli.evaluation.predictions import image_size, load_predictions, match_predictions
from dbcli.evaluation.text_scoring import ImageText, TextScores, score_image, summarize_text
from dbcli.postprocess.boxes import Detection

Warn = Callable[[str], None]
Progress = Callable[[int], None]  # called with the number of images just finished


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
    images: list[ImageMatch] = field(default_factory=list)  # per scored image, in order (not in to_dict)
    text: TextScores | None = None  # --text: the text read, scored (dbcli.evaluation.text_scoring)

    @property
    def images_per_s(self) -> float:
        return self.scores.num_images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**self.scores.to_dict(), "images_per_s": self.images_per_s, "seconds": self.seconds,
                "skipped": self.skipped, "missing_predictions": self.missing,
                "unmatched_predictions": self.unmatched, "capped_images": self.capped,
                "settings": self.settings, **({"text": self.text.to_dict()} if self.text is not None else {})}


# --- running a backend ----------------------------------------------------------------------------
def scoring_settings(settings: Settings) -> Settings:
    """``settings`` as scoring runs them: no reading order (order does not change a score), EXIF as
    each sample says, at least one image per batch."""
    return replace(settings, batch_size=max(1, int(settings.batch_size)), exif=True, sort="none")


def iter_prob_maps(samples: Sequence[Sample], model: Backend | Model, *, settings: Settings,
                   images: Sequence[np.ndarray] | None = None, warn: Warn = _nowarn,
                   skipped: list[str] | None = None, progress: Progress | None = None
                   ) -> Iterator[tuple[Sample, np.ndarray, list[Detection], int, tuple[int, int]]]:
    """Yield ``(sample, prob_map, detections, capped, (height, width))`` per decodable image, in order.

    Runs ``dbcli.engine.pipeline.run_pipeline`` (the engine of ``dbnet detect``) with ``model`` (a
    backend, or a loaded ``Model``) and ``scoring_settings(settings)``: ``prob_map`` is at
    network-input resolution, ``detections`` are post-processed with ``settings.post`` in
    original-image pixels; ``capped`` is 1 when the image hit ``post.max_candidates``, else 0.
    ``images``: the samples' images already decoded (``(H, W, 3)`` uint8 RGB), else their files are
    read. Undecodable images (and those over ``max_megapixels`` million pixels) are reported through
    ``warn``, appended to ``skipped`` and not yielded."""
    loaded = model if isinstance(model, Model) else Model(model, {})
    sources = images if images is not None else [FileImage(Path(s.image_path), s.exif) for s in samples]
    done = (lambda: progress(1)) if progress is not None else None
    for item in run_pipeline(sources, loaded, scoring_settings(settings), with_prob=True, on_done=done):
        if isinstance(item, Failure):
            warn(f"skipping {item.message}")
            if skipped is not None:
                skipped.append(str(samples[item.index].image_path))
            continue
        for note in item.notes:
            warn(note)
        assert item.prob is not None
        yield samples[item.index], item.prob, item.detections, int(item.capped), (item.height, item.width)


def evaluate_model(samples: Sequence[Sample], model: Backend | Model, *, settings: Settings,
                   images: Sequence[np.ndarray] | None = None, warn: Warn = _nowarn,
                   progress: Progress | None = None) -> EvalResult:
    """Detect with ``model`` on every sample (``iter_prob_maps``) and score against its ground truth;
    with ``settings.text`` also the text read against the samples' transcriptions (``result.text``:
    ``dbcli.evaluation.text_scoring``; every sample must have ``texts``). ``result.capped`` counts the
    images that hit ``settings.post.max_candidates`` (the caller says it in its own words)."""
    started = time.perf_counter()
    skipped: list[str] = []
    results: list[ImageMatch] = []
    read: list[ImageText] = []
    capped = 0
    for sample, _, dets, hit, _ in iter_prob_maps(samples, model, settings=settings, images=images, warn=warn,
                                                   skipped=skipped, progress=progress):
        capped += hit
        results.append(evaluate_image(sample.polygons, sample.ignore, [d.points for d in dets]))
        if settings.text:
            read.append(score_image(sample, [d.points for d in dets], [d.text or "" for d in dets]))
    used = scoring_settings(settings)
    figures = {"short_side": used.short_side, "max_side": used.max_side, "batch_size": used.batch_size,
               **asdict(used.post)}
    return EvalResult(summarize(results), time.perf_counter() - started, skipped, capped=capped, settings=figures,
                      images=results, text=summarize_text(read) if settings.text else None)


# --- scoring a predictions file -------------------------------------------------------------------
def _size_mismatch(sample: Sample, entry: dict) -> str | None:
    """A line when ``entry`` was predicted on an image of another size than ``sample``'s, else None."""
    if not (entry.get("width") and entry.get("height")):
        return None
    size = image_size(sample.image_path, sample.exif)
    if size is None or size == (entry["width"], entry["height"]):
        return None
    return (f"{sample.image_path.name} ({entry['width']}x{entry['height']} predicted, "
            f"{size[0]}x{size[1]} on disk)")


def _shown(names: list[str], count: int = 5) -> str:
    return ", ".join(names[:count]) + (" ..." if len(names) > count else "")


def _warn_unscored(warn: Warn, source: str, total: int, missing: list[str], unmatched: list[str],
                   size_mismatch: list[str]) -> None:
    if missing:
        warn(f"{len(missing)} of {total} ground-truth images have no predictions in {source} "
             f"(counted as no detections): {_shown([Path(m).name for m in missing])}")
    if unmatched:
        warn(f"{len(unmatched)} predictions match no ground-truth image of the split (ignored): {_shown(unmatched)}")
    if size_mismatch:
        warn(f"{len(size_mismatch)} predictions were made on images of another size than the dataset's: "
             + ", ".join(size_mismatch[:3]))


def evaluate_predictions(samples: Sequence[Sample], predictions: str | Path | list[dict],
                         box_thresh: float | None = None, warn: Warn = _nowarn) -> EvalResult:
    """Score predictions (a file path or ``load_predictions`` entries) against ``samples``.

    Ground-truth images with no prediction entry count as images with no detections (and are
    reported). ``box_thresh``: drop detections whose score is below it (``None``: keep all)."""
    started = time.perf_counter()
    source = str(predictions) if isinstance(predictions, (str, Path)) else "predictions"
    entries = load_predictions(predictions) if isinstance(predictions, (str, Path)) else predictions
    base = Path(predictions).parent if isinstance(predictions, (str, Path)) else None
    matched, unmatched = match_predictions(samples, entries, source, base)
    results, missing, size_mismatch = [], [], []
    for sample, entry in zip(samples, matched):
        dets = []
        if entry is None:
            missing.append(str(sample.image_path))
        else:
            dets = [p for p, sc in zip(entry["polygons"], entry["scores"]) if box_thresh is None or sc >= box_thresh]
            size_mismatch += [line] if (line := _size_mismatch(sample, entry)) else []
        results.append(evaluate_image(sample.polygons, sample.ignore, dets))
    _warn_unscored(warn, source, len(samples), missing, unmatched, size_mismatch)
    return EvalResult(summarize(results), time.perf_counter() - started, missing=missing,
                      unmatched=unmatched, settings={"pred": source, "box_thresh": box_thresh})
