"""The one image -> detections engine, used by ``dbnet detect``, ``eval``, ``visualize``, the
trainer's validation and the Python API (``dbcli.Detector``).

Pipeline: decode + resize + normalise in a thread pool that runs ahead of the network (so decoding
overlaps inference); group prepared images of the same network input size into batches of
``batch_size`` (same-size batches need no padding, so the results never depend on the batch size or
on which images share a batch); run the backend (``dbcli.backends.Backend``); post-process each
probability map (``dbcli.postprocess``); yield the results in input order.

Each image's detections are put in reading order (``Settings.sort``, ``dbcli.reading_order``) and,
when asked for, cut out as rectified crops (``dbcli.crops``).

Inputs are image files (``str`` / ``PathLike``), ``FileImage`` (a file with its own EXIF rule, as
dataset samples have), ``PdfPage`` (a page of a PDF, rendered in the decode threads), ``(H, W, 3)``
uint8 RGB numpy arrays or PIL images.

This module must not import torch: the ONNX backend runs without it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from dbcli.backends import Model
from dbcli.errors import DBNetError
from dbcli.imaging import DEFAULT_MAX_MEGAPIXELS, check_sides, decode_image, default_cap_note, prepare
from dbcli.pdf import PageInfo, PdfPage, render_page
from dbcli.postprocess import Detection, PostConfig, cap_message, detections_and_candidates, post_config_from
from dbcli.reading_order import SORT_MODES, reading_order

DEFAULT_SHORT_SIDE = 736


@dataclass(frozen=True)
class FileImage:
    """An image file with its own EXIF rule (``exif`` False: stored pixels, e.g. MSRA-TD500)."""

    path: Path
    exif: bool = True


# What the engine takes per image: a file, a FileImage, a PdfPage, an (H, W, 3) uint8 RGB array or a
# PIL image.
Source = Union[str, "os.PathLike[str]", FileImage, PdfPage, np.ndarray, Any]


@dataclass(frozen=True)
class Settings:
    """Everything that decides the detections besides the model: the network input size (shorter
    side ``short_side`` pixels, longer side capped at ``max_side``), post-processing, batch size,
    EXIF handling, the decompression-bomb limit (million pixels; None: no limit) and the order of
    each image's detections (``sort``: ``dbcli.reading_order.SORT_MODES``)."""

    short_side: int = DEFAULT_SHORT_SIDE
    max_side: int | None = None
    post: PostConfig = PostConfig()
    batch_size: int = 1
    exif: bool = True
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS  # larger images are refused (bombs)
    sort: str = "lines"

    def to_dict(self) -> dict:
        return {"short_side": self.short_side, "max_side": self.max_side, **asdict(self.post),
                "exif": self.exif, "batch_size": self.batch_size, "sort": self.sort}


def resolve_settings(model: Model, short_side: int | None = None, max_side: int | None = None,
                     thresh: float | None = None, box_thresh: float | None = None,
                     unclip_ratio: float | None = None, polygon: bool | None = None,
                     batch_size: int | None = None, exif: bool = True,
                     max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
                     max_candidates: int | None = None, sort: str = "lines") -> Settings:
    """Options given win; else the weights file's stored values; else the library defaults
    (``PostConfig``, short side 736). ``sort``: the order of each image's detections. ``batch_size``
    None: 8 on CUDA, 1 elsewhere (on a CPU a larger batch only adds memory traffic: batch 4 is ~20%
    slower per image). ``max_megapixels``: images of more pixels are refused (``None``: no limit).
    Raises ``DBNetError`` for a value out of range."""
    config = post_config_from(model.postprocess, thresh=thresh, box_thresh=box_thresh,
                              unclip_ratio=unclip_ratio, polygon=polygon, max_candidates=max_candidates)
    side = short_side if short_side is not None else (model.short_side or DEFAULT_SHORT_SIDE)
    for name, value in (("thresh", config.thresh), ("box-thresh", config.box_thresh)):
        if not 0.0 <= value <= 1.0:
            raise DBNetError(f"--{name} must lie in [0, 1], got {value}")
    if config.unclip_ratio <= 0:
        raise DBNetError(f"--unclip-ratio must be positive, got {config.unclip_ratio}")
    check_sides(side, max_side)
    if config.max_candidates < 1:
        raise DBNetError(f"--max-candidates must be at least 1, got {config.max_candidates}")
    if max_megapixels is not None and not max_megapixels > 0:
        raise DBNetError(f"--max-megapixels must be positive, got {max_megapixels}")
    if batch_size is None:
        batch_size = 8 if str(model.info.get("device", "")).startswith("cuda") else 1
    if batch_size < 1:
        raise DBNetError(f"--batch-size must be at least 1, got {batch_size}")
    if sort not in SORT_MODES:
        raise DBNetError(f"unknown --sort {sort!r} ({', '.join(SORT_MODES)})")
    return Settings(int(side), max_side, config, int(batch_size), bool(exif), max_megapixels, sort)


@dataclass
class ImageResult:
    """One image's detections (``points`` in original-image pixels, in ``Settings.sort`` order), its
    size in pixels, and what was asked for besides: the decoded image, the network-resolution maps,
    the crops (one ``(h, w, 3)`` uint8 RGB array per detection, ``dbcli.crops``), notes for the user.
    ``candidates``: the candidate regions of its probability map; ``capped``: more of them than
    ``max_candidates`` (only the first were post-processed). ``page``: for a PDF page, what maps its
    pixels back to the PDF; ``crop_files``: where ``dbnet detect --crops`` wrote the crops."""

    index: int
    file: str
    width: int
    height: int
    detections: list[Detection]
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, kept only when asked for
    prob: np.ndarray | None = None  # (h, w) network-resolution maps, only when asked for
    thresh: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # one line each: a frame dropped, a size cap, ...
    candidates: int = 0
    capped: bool = False
    cap_note: str | None = None  # the line that says the cap was hit, or None
    page: PageInfo | None = None
    crops: list[np.ndarray] | None = None
    crop_files: list[str] | None = None

    def messages(self) -> list[str]:
        """Every line to tell the user about this image (its notes, then the candidate cap)."""
        return self.notes + ([self.cap_note] if self.cap_note else [])

    def to_dict(self) -> dict:
        """The image's entry in ``dbnet detect``'s JSON: ``file``, ``width``, ``height`` (pixels), for a
        PDF page ``page``, ``page_size_pt`` and ``dpi``, and ``detections`` (``points``, ``score`` and,
        with crops written, ``crop``)."""
        entry: dict = {"file": self.file, "width": self.width, "height": self.height}
        if self.page is not None:
            entry.update(self.page.to_dict())
        entry["detections"] = [d.to_dict() for d in self.detections]
        if self.crop_files is not None:
            for det, crop in zip(entry["detections"], self.crop_files):
                det["crop"] = crop
        return entry

    @classmethod
    def from_dict(cls, index: int, entry: dict) -> ImageResult:
        """The result ``to_dict`` gave ``entry`` (what travels between processes under torchrun)."""
        page = None
        if "page" in entry:
            width_pt, height_pt = entry["page_size_pt"]
            page = PageInfo(entry["page"], width_pt, height_pt, entry["dpi"])
        dets = entry["detections"]
        crops = [d["crop"] for d in dets] if dets and all("crop" in d for d in dets) else None
        return cls(index, entry["file"], entry["width"], entry["height"],
                   [Detection(np.asarray(d["points"], np.float64), d["score"]) for d in dets],
                   page=page, crop_files=crops)


@dataclass
class Failure:
    """An input that could not be used; ``message`` names the file and the reason."""

    index: int
    file: str
    message: str


@dataclass
class Decoded:
    """One decoded input: its size in pixels, the image itself only when kept (the full-size image
    of a huge photo is dropped as soon as the network input is made), the network input and notes."""

    width: int
    height: int
    image: np.ndarray | None
    x: np.ndarray | None
    notes: list[str]
    page: PageInfo | None = None


def source_name(source: Source, index: int) -> str:
    """How results and messages name an input: its path, or ``<image N>`` for an in-memory image."""
    if isinstance(source, FileImage):
        return str(source.path)
    if isinstance(source, PdfPage):
        return source.name
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source))
    return f"<image {index}>"


def as_rgb_array(image: Any) -> np.ndarray:
    """A numpy ``(H, W, 3)`` uint8 RGB array or a PIL image as ``(H, W, 3)`` uint8 RGB (PIL images
    are converted to RGB; a greyscale ``(H, W)`` array is repeated). Raises ``DBNetError``."""
    if not isinstance(image, np.ndarray):
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise DBNetError(f"cannot detect in a {type(image).__name__}: give a file path, an (H, W, 3) "
                             "uint8 RGB numpy array or a PIL image")
        image = np.asarray(image.convert("RGB"))
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise DBNetError(f"expected an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _decode(source: Source, name: str, settings: Settings, network: bool, keep_image: bool) -> Decoded:
    page = None
    if isinstance(source, FileImage):
        image, notes = decode_image(source.path, source.exif, settings.max_megapixels)
    elif isinstance(source, PdfPage):
        image, page = render_page(source, settings.max_megapixels)
        notes = []
    elif isinstance(source, (str, os.PathLike)):
        image, notes = decode_image(Path(source), settings.exif, settings.max_megapixels)
    else:
        image, notes = as_rgb_array(source), []
    height, width = image.shape[:2]
    x = None
    if network:
        note = default_cap_note(height, width, settings.short_side, settings.max_side)
        notes += [f"{name}: {note}"] if note else []
        x = prepare(image, settings.short_side, settings.max_side)
    return Decoded(width, height, image if keep_image or not network else None, x, notes, page)


def decode_workers() -> int:
    from dbcli.cpu import default_workers

    return default_workers(4)


def run_pipeline(paths: Sequence[Source], model: Model | None, settings: Settings, *,
                 keep_images: bool = False, with_maps: bool = False, with_prob: bool = False,
                 with_crops: bool = False, on_done: Callable[[], None] | None = None,
                 indices: Sequence[int] | None = None) -> Iterator[ImageResult | Failure]:
    """Yield one ``ImageResult`` or ``Failure`` per input of ``paths`` (see the module doc), in order.

    ``model`` None: decode only (no detections). ``keep_images``: each result holds its decoded
    image. ``with_maps``: also the (P, T) maps, via ``model.maps_fn``; ``with_prob``: the probability
    map P alone. ``with_crops``: each detection's rectified crop (``ImageResult.crops``).
    ``indices``: the global index of each input (for multi-process runs). ``on_done`` is called once
    per finished image (progress).
    """
    if with_maps and (model is None or model.maps_fn is None):
        raise DBNetError("probability/threshold maps need the torch backend (an ONNX export holds "
                         "only the probability map)")
    indices = list(range(len(paths))) if indices is None else list(indices)
    lookahead = 2 * settings.batch_size + decode_workers()
    max_buffered = 2 * settings.batch_size  # prepared images waiting in same-size buckets
    ready: dict[int, ImageResult | Failure] = {}
    order = deque(indices)
    buckets: dict[tuple, list] = {}

    def finish(item: ImageResult | Failure) -> None:
        ready[item.index] = item
        if on_done is not None:
            on_done()

    def flush(key: tuple) -> None:
        assert model is not None
        entries = buckets.pop(key)
        batch = np.stack([e[2].x for e in entries])
        if with_maps:
            assert model.maps_fn is not None
            probs, threshs = model.maps_fn.maps(batch)
        else:
            probs, threshs = model.prob_fn(batch), None
        keep_prob = with_maps or with_prob
        for j, (index, name, d) in enumerate(entries):
            prob = probs[j]
            dets, candidates = detections_and_candidates(prob, d.width, d.height, settings.post)
            if settings.sort != "none" and len(dets) > 1:
                dets = [dets[k] for k in reading_order([det.points for det in dets], settings.sort)]
            crops = None
            if with_crops:
                from dbcli.crops import crop_regions

                assert d.image is not None  # (kept for the crops)
                crops = crop_regions(d.image, [det.points for det in dets])
            capped = candidates > settings.post.max_candidates
            cap_note = f"{name}: {cap_message(candidates, settings.post.max_candidates)}" if capped else None
            finish(ImageResult(index, name, d.width, d.height, dets, d.image if keep_images else None,
                               prob if keep_prob else None, threshs[j] if threshs is not None else None,
                               d.notes, candidates, capped, cap_note, d.page, crops))

    with ThreadPoolExecutor(decode_workers(), thread_name_prefix="dbnet-decode") as pool:
        jobs: deque = deque()
        todo = iter(zip(indices, paths))

        def refill() -> None:
            while len(jobs) < lookahead:
                try:
                    index, source = next(todo)
                except StopIteration:
                    return
                name = source_name(source, index)
                jobs.append((index, name, pool.submit(_decode, source, name, settings, model is not None,
                                                      keep_images or with_crops)))

        refill()
        while jobs or buckets:
            if jobs:
                index, name, future = jobs.popleft()
                refill()
                try:
                    d = future.result()
                except DBNetError as exc:
                    finish(Failure(index, name, str(exc)))
                except Exception as exc:  # a decoder crash must not stop the run
                    finish(Failure(index, name, f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})"))
                else:
                    if model is None:
                        finish(ImageResult(index, name, d.width, d.height, [],
                                           d.image if keep_images else None, notes=d.notes, page=d.page))
                    else:
                        key = d.x.shape
                        buckets.setdefault(key, []).append((index, name, d))
                        if len(buckets[key]) >= settings.batch_size:
                            flush(key)
                        elif sum(len(b) for b in buckets.values()) > max_buffered:
                            flush(max(buckets, key=lambda k: len(buckets[k])))
            else:
                for key in list(buckets):
                    flush(key)
            while order and order[0] in ready:
                yield ready.pop(order.popleft())
