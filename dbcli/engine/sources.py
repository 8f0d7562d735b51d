"""What the engine takes per image and how it is decoded: image files (``str`` / ``PathLike``),
``FileImage`` (a file with its own EXIF rule, as dataset samples have), ``PdfPage`` (a page of a PDF,
rendered in the decode threads), ``(H, W, 3)`` uint8 RGB numpy arrays or PIL images.

``decode`` turns one into a ``Decoded``: its size, the network input and the notes for the user.
Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from dbcli.engine.pdf import PageInfo, PdfPage, render_page
from dbcli.engine.scale_policy import may_rescale
from dbcli.engine.settings import Settings
from dbcli.engine.tiling import needs_tiles
from dbcli.imaging import decode_image, default_cap_note, image_to_rgb, inference_size, normalize, resize_to


@dataclass(frozen=True)
class FileImage:
    """An image file with its own EXIF rule (``exif`` False: stored pixels, e.g. MSRA-TD500)."""

    path: Path
    exif: bool = True


# What the engine takes per image: a file, a FileImage, a PdfPage, an (H, W, 3) uint8 RGB array or a
# PIL image.
Source = Union[str, "os.PathLike[str]", FileImage, PdfPage, np.ndarray, Any]


@dataclass
class Decoded:
    """One decoded input: its size in pixels, the image itself only when kept (the full-size image
    of a huge photo is dropped as soon as the network input is made, unless the scale policy may run
    it again), the ``(3, H', W')`` float32 network input (None when only decoding, or when the pass is
    larger than a tile), notes, and for a pass larger than a tile (``dbcli.engine.tiling.needs_tiles``)
    the ``(H', W', 3)`` uint8 image at network scale that the engine runs in tiles instead of ``x``."""

    width: int
    height: int
    image: np.ndarray | None
    x: np.ndarray | None
    notes: list[str]
    page: PageInfo | None = None
    scaled: np.ndarray | None = None
    tiles: int = 1  # tiles the first pass ran (set by the engine when it ran in tiles)


def source_name(source: Source, index: int) -> str:
    """How results and messages name an input: its path, or ``<image N>`` for an in-memory image."""
    if isinstance(source, FileImage):
        return str(source.path)
    if isinstance(source, PdfPage):
        return source.name
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source))
    return f"<image {index}>"


def _pixels(source: Source, name: str, settings: Settings) -> tuple[np.ndarray, list[str], PageInfo | None]:
    """Every kind of input decoded by the same rules (``dbcli.imaging``): a PIL image as its file would be."""
    if isinstance(source, FileImage):
        image, notes = decode_image(source.path, source.exif, settings.max_megapixels)
        return image, notes, None
    if isinstance(source, PdfPage):
        image, page = render_page(source, settings.max_megapixels)
        return image, [], page
    if isinstance(source, (str, os.PathLike)):
        image, notes = decode_image(Path(source), settings.exif, settings.max_megapixels)
        return image, notes, None
    image, notes = image_to_rgb(source, settings.exif, name, settings.max_megapixels)
    return image, notes, None


def decode(source: Source, name: str, settings: Settings, network: bool, keep_image: bool) -> Decoded:
    """Decode ``source`` (named ``name`` in notes); with ``network``, also make its network input
    (``dbcli.imaging.prepare``). The image is kept when ``keep_image`` or when no network input is
    made. Raises ``DBNetError`` naming the input when it cannot be decoded."""
    image, notes, page = _pixels(source, name, settings)
    height, width = image.shape[:2]
    x = scaled = None
    if network:
        note = default_cap_note(height, width, settings.short_side, settings.max_side)
        notes += [f"{name}: {note}"] if note else []
        size = inference_size(height, width, settings.short_side, settings.max_side)
        if needs_tiles(size):
            scaled = resize_to(image, size)
        else:
            x = normalize(resize_to(image, size))
        keep_image = keep_image or (settings.scale_policy == "auto" and may_rescale(height, width, size[0] / height))
    return Decoded(width, height, image if keep_image or not network else None, x, notes, page, scaled)
