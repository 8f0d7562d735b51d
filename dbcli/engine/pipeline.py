"""The one image -> detections engine, used by ``dbnet detect``, ``eval``, ``visualize``, the
trainer's validation and the Python API (``dbcli.Detector``).

``run_pipeline`` in four named steps:

1. ``decode_ahead``: decode + resize + normalise in a thread pool that runs ahead of the network
   (``dbcli.engine.sources.decode``), so decoding overlaps inference;
2. ``SameSizeBatches``: group prepared images of the same network input size into batches of
   ``batch_size`` (same-size batches need no padding, so the results never depend on the batch size
   or on which images share a batch);
3. ``run_batch``: the backend (``dbcli.backends.base.Backend``) on one batch; an input whose pass is
   larger than a tile skips batching and runs in tiles (``run_tiled``), whatever chose its scale;
4. ``finish_image``: one image's post-processing (``post_process``: ``dbcli.postprocess.boxes``),
   scale policy (``scale_step``: ``dbcli.engine.scale_policy``), reading order
   (``in_reading_order``: ``Settings.sort``, ``dbcli.postprocess.reading_order``), when asked for
   rectified crops (``crops_of``: ``dbcli.postprocess.crops``), with ``Settings.text`` the text read in
   them (``with_text``: ``dbcli.engine.text``) and notes (``finite_map``, ``cap_note``);

then the records are yielded in input order.

This module must not import torch: the ONNX backend runs without it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dbcli.backends.base import Model
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.scale_policy import Rescaled, apply_policy, scale_entry
from dbcli.engine.settings import Settings
from dbcli.engine.sources import Decoded, Source, decode, source_name
from dbcli.engine.text import reader_for, with_text
from dbcli.engine.tiling import tiled_map
from dbcli.errors import DBNetError
from dbcli.postprocess.boxes import Detection, cap_message, detections_and_candidates
from dbcli.postprocess.reading_order import reading_order


@dataclass(frozen=True)
class Wanted:
    """What each record holds besides its detections: the decoded image (``keep_images``), the
    (P, T) maps (``with_maps``, via ``Model.maps_fn``), the probability map P alone (``with_prob``),
    each detection's rectified crop (``with_crops``)."""

    keep_images: bool = False
    with_maps: bool = False
    with_prob: bool = False
    with_crops: bool = False


@dataclass
class Prepared:
    """A decoded input waiting for the network."""

    index: int
    name: str
    decoded: Decoded


def decode_workers() -> int:
    from dbcli.cpu import default_workers

    return default_workers(4)


def decode_ahead(sources: Sequence[Source], indices: Sequence[int], settings: Settings, network: bool,
                 keep_image: bool, lookahead: int) -> Iterator[Prepared | Failure]:
    """Each input decoded (``sources.decode``) in a thread pool at most ``lookahead`` inputs ahead,
    in input order; an input that cannot be decoded comes as a ``Failure`` naming it."""
    with ThreadPoolExecutor(decode_workers(), thread_name_prefix="dbnet-decode") as pool:
        jobs: deque = deque()
        todo = iter(zip(indices, sources))

        def refill() -> None:
            for index, source in todo:
                name = source_name(source, index)
                jobs.append((index, name, pool.submit(decode, source, name, settings, network, keep_image)))
                if len(jobs) >= lookahead:
                    return

        refill()
        while jobs:
            index, name, future = jobs.popleft()
            refill()
            try:
                prepared = Prepared(index, name, future.result())
            except Exception as exc:  # a decoder crash must not stop the run
                yield _decode_failure(index, name, exc)
            else:
                yield prepared


def _decode_failure(index: int, name: str, exc: Exception) -> Failure:
    """The ``Failure`` of an input that could not be decoded; what its decoder allocated is handed
    back to the OS (``dbcli.cpu.give_back_memory``)."""
    from dbcli.cpu import give_back_memory

    give_back_memory()
    if isinstance(exc, DBNetError):
        return Failure(index, name, str(exc))
    return Failure(index, name, f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})")


class SameSizeBatches:
    """Prepared images grouped by network input size. ``add`` returns the batch it completed (or,
    when more than ``max_buffered`` images wait, the largest bucket), else None; ``drain`` gives
    what is left."""

    def __init__(self, batch_size: int, max_buffered: int):
        self.batch_size, self.max_buffered = batch_size, max_buffered
        self.buckets: dict[tuple, list[Prepared]] = {}

    def add(self, item: Prepared) -> list[Prepared] | None:
        assert item.decoded.x is not None
        key = item.decoded.x.shape
        self.buckets.setdefault(key, []).append(item)
        if len(self.buckets[key]) >= self.batch_size:
            return self.buckets.pop(key)
        if sum(len(b) for b in self.buckets.values()) > self.max_buffered:
            return self.buckets.pop(max(self.buckets, key=lambda k: len(self.buckets[k])))
        return None

    def drain(self) -> Iterator[list[Prepared]]:
        for key in list(self.buckets):
            yield self.buckets.pop(key)


def run_batch(model: Model, batch: list[Prepared], with_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The backend on one same-size batch: ``(N, h, w)`` probability maps and, ``with_maps``, the
    threshold maps (else None)."""
    x = np.stack([item.decoded.x for item in batch if item.decoded.x is not None])
    if with_maps:
        assert model.maps_fn is not None
        return model.maps_fn.maps(x)
    return model.prob_fn(x), None


SCORE_SLACK = 1e-3  # how far outside [0, 1] a map may stray (fp16 rounding) without a note


def run_tiled(model: Model, item: Prepared, with_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The backend on one input whose pass is larger than a tile (``Decoded.scaled``), in tiles
    (``dbcli.engine.tiling.tiled_map``): its ``(H', W')`` probability map and, ``with_maps``, its
    threshold map (else None); ``Decoded.tiles`` says how many tiles ran. The scaled image is let go
    once its maps are made."""
    scaled, item.decoded.scaled = item.decoded.scaled, None
    assert scaled is not None
    counts = [0, 0]
    try:
        if with_maps:
            maps_fn = model.maps_fn
            assert maps_fn is not None
            both = tiled_map(lambda x: np.stack(maps_fn.maps(x), axis=1), scaled, channels=2, counts=counts)
            return both[0], both[1]
        return tiled_map(model.prob_fn, scaled, counts=counts), None
    finally:
        item.decoded.tiles = counts[0]


def finite_map(prob: np.ndarray, name: str) -> tuple[np.ndarray, str | None]:
    """``prob`` with NaN and -inf as 0 and +inf as 1 (a broken model or an overflow in fp16 must not
    give ``"score": NaN``, which is not JSON) and every value clipped to [0, 1] (a model whose output
    is not a probability, e.g. no sigmoid, must not put scores above 1 in the JSON), and a note naming
    the image when any were there (beyond ``SCORE_SLACK``)."""
    finite = np.isfinite(prob)
    if finite.all():
        low, high = (float(prob.min()), float(prob.max())) if prob.size else (0.0, 0.0)
        if low >= 0 and high <= 1:
            return prob, None
        fixed = np.clip(prob, 0.0, 1.0)
        if low >= -SCORE_SLACK and high <= 1 + SCORE_SLACK:
            return fixed, None
        return fixed, (f"{name}: the model's probability map holds values from {low:.3g} to {high:.3g}, "
                       "outside [0, 1] (clipped); its detections may be wrong (not a probability map: a "
                       "model without its final sigmoid?)")
    bad = int(prob.size - np.count_nonzero(finite))
    fixed = np.clip(np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return fixed, (f"{name}: the model's probability map holds {bad} NaN or infinite value(s) of {prob.size} "
                   "(counted as 0 or 1); its detections may be wrong (damaged weights, or fp16 overflow?)")


def post_process(item: Prepared, prob: np.ndarray, settings: Settings) -> Rescaled:
    """The first pass on one image's finite ``(h, w)`` probability map: its detections (original
    pixels), candidate count and cap flag, the map itself and its ``scale`` entry (the network scale
    of the first pass; under ``auto`` given as the "first scale")."""
    d, post = item.decoded, settings.post
    dets, candidates = detections_and_candidates(prob, d.width, d.height, post)
    first_size = prob.shape[-2:]
    first_scale = (first_size[0] / d.height + first_size[1] / d.width) / 2
    reason = "first scale" if settings.scale_policy == "auto" else None
    scale = scale_entry(first_scale, first_size, settings.scale_policy, reason, d.tiles)
    return Rescaled(dets, candidates, candidates > post.max_candidates, prob, scale)


def scale_step(item: Prepared, first: Rescaled, settings: Settings, model: Model | None) -> Rescaled:
    """Under ``settings.scale_policy == "auto"`` (with ``model`` and the decoded image) the scale
    policy's result (``dbcli.engine.scale_policy.apply_policy``: a re-run where the text is
    small), else ``first`` as it is."""
    image = item.decoded.image
    if settings.scale_policy != "auto" or model is None or image is None:
        return first
    first_size = first.prob.shape[-2:]
    found = apply_policy(model.prob_fn, image, first_size, first.detections, first.candidates, first.prob,
                         settings.post)
    if found.scale["size"] == first.scale["size"]:  # the first pass kept: its tiles
        found.scale["tiles"] = first.scale["tiles"]
    return found


def in_reading_order(dets: list[Detection], sort: str) -> list[Detection]:
    """``dets`` in the reading order ``sort`` (``dbcli.postprocess.reading_order``; ``"none"``: as
    they are)."""
    if sort != "none" and len(dets) > 1:
        return [dets[k] for k in reading_order([det.points for det in dets], sort)]
    return dets


def crops_of(item: Prepared, dets: list[Detection], wanted: Wanted, text: bool = False) -> list[np.ndarray] | None:
    """Each detection's rectified crop of the decoded image when ``wanted.with_crops`` or ``text``
    (the recogniser reads them), else None."""
    if not (wanted.with_crops or text):
        return None
    from dbcli.postprocess.crops import crop_regions

    assert item.decoded.image is not None  # (kept for the crops)
    return crop_regions(item.decoded.image, [det.points for det in dets])


def cap_note(item: Prepared, found: Rescaled, max_candidates: int) -> str | None:
    """The note naming the image when its candidates were capped at ``max_candidates``, else None."""
    return f"{item.name}: {cap_message(found.candidates, max_candidates)}" if found.capped else None


def finish_image(item: Prepared, prob: np.ndarray, thresh: np.ndarray | None, settings: Settings,
                 wanted: Wanted, model: Model | None = None) -> ImageRecord:
    """One image's record from its ``(h, w)`` probability map: post-processing (``settings.post``),
    under ``settings.scale_policy == "auto"`` the scale policy (a re-run with ``model`` where the text
    is small: ``dbcli.engine.scale_policy``), reading order (``settings.sort``), crops
    (``wanted.with_crops``), under ``settings.text`` the text read in each crop (``dbcli.engine.text``,
    the recogniser kept on ``model``) and the notes (decoding, a non-finite map, the candidate cap)."""
    d = item.decoded
    prob, note = finite_map(prob, item.name)
    notes = list(d.notes) + ([note] if note else [])
    found = scale_step(item, post_process(item, prob, settings), settings, model)
    notes += [found.note] if found.note else []
    dets = in_reading_order(found.detections, settings.sort)
    crops = crops_of(item, dets, wanted, settings.text and model is not None)
    if settings.text and model is not None and crops is not None:
        dets = with_text(dets, crops, reader_for(model))
    crops = crops if wanted.with_crops else None
    keep_prob = wanted.with_maps or wanted.with_prob
    return ImageRecord(item.index, item.name, d.width, d.height, dets, d.image if wanted.keep_images else None,
                       found.prob if keep_prob else None, thresh, notes, found.candidates, found.capped,
                       cap_note(item, found, settings.post.max_candidates), d.page, crops, scale=found.scale)


def _decoded_only(item: Prepared, wanted: Wanted) -> ImageRecord:
    d = item.decoded
    return ImageRecord(item.index, item.name, d.width, d.height, [], d.image if wanted.keep_images else None,
                       notes=d.notes, page=d.page)


def _finish_batch(model: Model, batch: list[Prepared], settings: Settings, wanted: Wanted) -> list[ImageRecord]:
    probs, threshs = run_batch(model, batch, wanted.with_maps)
    return [finish_image(item, probs[j], threshs[j] if threshs is not None else None, settings, wanted, model)
            for j, item in enumerate(batch)]


def _records(sources: Sequence[Source], indices: list[int], model: Model | None, settings: Settings,
             wanted: Wanted) -> Iterator[ImageRecord | Failure]:
    """Every input's record or failure, in the order they are done (batches complete out of order)."""
    lookahead = 2 * settings.batch_size + decode_workers()
    batches = SameSizeBatches(settings.batch_size, 2 * settings.batch_size)
    keep_image = wanted.keep_images or wanted.with_crops or settings.text
    for item in decode_ahead(sources, indices, settings, model is not None, keep_image, lookahead):
        if isinstance(item, Failure):
            yield item
        elif model is None:
            yield _decoded_only(item, wanted)
        elif item.decoded.scaled is not None:  # larger than a tile: never one untiled pass
            prob, thresh = run_tiled(model, item, wanted.with_maps)
            yield finish_image(item, prob, thresh, settings, wanted, model)
        else:
            batch = batches.add(item)
            if batch is not None:
                yield from _finish_batch(model, batch, settings, wanted)
    for batch in batches.drain():
        assert model is not None
        yield from _finish_batch(model, batch, settings, wanted)


def run_pipeline(paths: Sequence[Source], model: Model | None, settings: Settings, *,
                 keep_images: bool = False, with_maps: bool = False, with_prob: bool = False,
                 with_crops: bool = False, on_done: Callable[[], None] | None = None,
                 indices: Sequence[int] | None = None) -> Iterator[ImageRecord | Failure]:
    """Yield one ``ImageRecord`` or ``Failure`` per input of ``paths`` (see the module doc), in order.

    ``model`` None: decode only (no detections). ``keep_images``, ``with_maps``, ``with_prob``,
    ``with_crops``: see ``Wanted``. ``indices``: the global index of each input (for multi-process
    runs). ``on_done`` is called once per finished image (progress).
    """
    if with_maps and (model is None or model.maps_fn is None):
        raise DBNetError("probability/threshold maps need the torch backend (an ONNX export holds "
                         "only the probability map)")
    indices = list(range(len(paths))) if indices is None else list(indices)
    wanted = Wanted(keep_images, with_maps, with_prob, with_crops)
    ready: dict[int, ImageRecord | Failure] = {}
    order = deque(indices)
    for item in _records(paths, indices, model, settings, wanted):
        ready[item.index] = item
        if on_done is not None:
            on_done()
        while order and order[0] in ready:
            yield ready.pop(order.popleft())
