"""The training images kept in memory (``dbnet train --cache-images``), within a memory budget.

Each image is stored at most ``max_side`` pixels on its longer side: the training crop never
magnifies more than ``crop_size / min_crop_side_ratio`` pixels of an image's longer side into the
crop (``dbcli.data.augment``), so nothing it would use is lost. Images are taken in order while
their header size fits what is left of the budget; the others are decoded as they are used. The
validation images are cached whole (at their own size, which validation scores in) or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from dbcli.data.sample import Sample
from dbcli.errors import DBNetError
from dbcli.imaging import read_image

MB = 2**20
DEFAULT_MAX_MB = 2048.0  # the default budget's ceiling
DEFAULT_RAM_SHARE = 0.25  # ... and its share of the available memory, whichever is less


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_budget_mb() -> float:
    """``DEFAULT_MAX_MB`` or ``DEFAULT_RAM_SHARE`` of the available memory, whichever is less."""
    available = available_memory()
    return DEFAULT_MAX_MB if available is None else min(DEFAULT_MAX_MB, DEFAULT_RAM_SHARE * available / MB)


def _header_size(sample: Sample) -> tuple[int, int] | None:
    """``(width, height)`` from the file's header (``dbcli.image_size``; ``None``: unreadable, or not a
    regular file, which is never opened: decoding will say why)."""
    from dbcli.files import check_regular_file
    from dbcli.image_size import file_size

    try:
        check_regular_file(sample.image_path, "image file", missing_ok=True)
        return file_size(sample.image_path)
    except (DBNetError, OSError):
        return None


def _stored_scale(width: int, height: int, max_side: int) -> float:
    return min(1.0, max_side / max(width, height, 1))


def _shrink(sample: Sample, image: np.ndarray, max_side: int) -> tuple[Sample, np.ndarray]:
    """``image`` (``(H, W, 3)`` uint8) at most ``max_side`` pixels on its longer side, and ``sample``
    with its polygons scaled to match."""
    h, w = image.shape[:2]
    scale = _stored_scale(w, h, max_side)
    if scale >= 1.0:
        return sample, image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h
    return replace(sample, polygons=[p * (sx, sy) for p in sample.polygons]), small


@dataclass
class CachedImages:
    """The training samples (polygons in the stored images' pixels) and their images (``None``: not
    cached, decoded when used), the validation images (``None``: read from files) and what was
    chosen, in words (``summary``)."""

    samples: list[Sample]
    images: list[np.ndarray | None]
    val_samples: list[Sample]
    val_images: list[np.ndarray] | None
    summary: str


def _estimate(sample: Sample, max_side: int | None) -> int:
    """Bytes of ``sample``'s image as stored (0 when its header cannot be read)."""
    size = _header_size(sample)
    if size is None:
        return 0
    scale = 1.0 if max_side is None else _stored_scale(*size, max_side)
    return round(size[0] * scale) * round(size[1] * scale) * 3


@dataclass
class _Filled:
    """The training part of the cache as it is filled: the samples kept (polygons in the stored
    images' pixels), their images (``None``: not cached), the bytes ``used`` and how many were
    ``shrunk`` to ``max_side``."""

    kept: list[Sample] = field(default_factory=list)
    images: list[np.ndarray | None] = field(default_factory=list)
    used: int = 0
    shrunk: int = 0

    def skip(self, sample: Sample) -> None:
        """Keep ``sample`` without its image (decoded when used)."""
        self.kept.append(sample)
        self.images.append(None)


def cache_training(samples: list[Sample], budget: int, max_side: int, log: Callable[[str], None]) -> _Filled:
    """``samples`` decoded in order while their images (at most ``max_side`` pixels on the longer
    side) fit ``budget`` bytes; the others kept without images. An undecodable image is said
    through ``log`` and dropped."""
    filled = _Filled()
    for sample in samples:
        if filled.used + _estimate(sample, max_side) > budget:
            filled.skip(sample)
            continue
        try:
            image = read_image(sample.image_path, sample.exif)
        except DBNetError as exc:
            log(f"warning: skipping {exc}")
            continue
        stored_sample, stored = _shrink(sample, image, max_side)
        del image
        if filled.used + stored.nbytes > budget:  # (a header that understated the size)
            filled.skip(sample)
            continue
        filled.shrunk += stored_sample is not sample
        filled.used += stored.nbytes
        filled.kept.append(stored_sample)
        filled.images.append(stored)
    return filled


def cache_validation(val_samples: list[Sample] | None, room: int,
                     log: Callable[[str], None]) -> tuple[list[Sample], list[np.ndarray] | None]:
    """``val_samples`` and their images, decoded whole when their header sizes all fit ``room``
    bytes (an undecodable one said through ``log`` and dropped), else ``(val_samples, None)``:
    read from files."""
    if not (val_samples and sum(_estimate(s, None) for s in val_samples) <= room):
        return val_samples or [], None
    val_kept: list[Sample] = []
    val_images: list[np.ndarray] = []
    for sample in val_samples:
        try:
            val_images.append(read_image(sample.image_path, sample.exif))
            val_kept.append(sample)
        except DBNetError as exc:
            log(f"warning: skipping {exc}")
    return val_kept, val_images


def cache_summary(filled: _Filled, used: int, budget_mb: float, max_side: int, has_val: bool,
                  val_cached: bool) -> str:
    """The cache's choices in words (``used`` bytes in all, validation images included)."""
    cached = sum(image is not None for image in filled.images)
    summary = (f"image cache: {cached} of {len(filled.kept)} training images in memory ({used / MB:.0f} MB of a "
               f"{budget_mb:.0f} MB budget, --cache-mb)")
    if cached < len(filled.kept):
        summary += f"; the other {len(filled.kept) - cached} are decoded as they are used"
    if filled.shrunk:
        summary += (f"; {filled.shrunk} stored at {max_side} px on the longer side (all that the training crops "
                    "use of them)")
    if has_val:
        summary += "; validation images " + ("in memory" if val_cached else "read from files")
    return summary


def cache_images(samples: list[Sample], val_samples: list[Sample] | None, budget_mb: float, max_side: int,
                 log: Callable[[str], None]) -> CachedImages:
    """Decode ``samples`` into memory while they fit ``budget_mb`` (each at most ``max_side`` pixels on
    its longer side), then ``val_samples`` if all of them fit what is left (``None``: not cached).
    Undecodable images are reported through ``log`` and dropped."""
    budget = int(budget_mb * MB)
    filled = cache_training(samples, budget, max_side, log)
    val_kept, val_images = cache_validation(val_samples, budget - filled.used, log)
    used = filled.used + sum(image.nbytes for image in val_images or [])
    summary = cache_summary(filled, used, budget_mb, max_side, bool(val_samples), val_images is not None)
    return CachedImages(filled.kept, filled.images, val_kept, val_images, summary)
