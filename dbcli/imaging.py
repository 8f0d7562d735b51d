"""Image decoding and the network's input preprocessing.

Images are ``(H, W, 3)`` uint8 RGB arrays. The network input is ``(3, H', W')`` float32, normalised
with ImageNet mean/std (the same in training and inference; torchvision checkpoints expect it).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from dbcli import defaults
from dbcli.errors import DBNetError

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0
# The one list of image extensions: a file with one of them is an image, found inside folders and by
# glob patterns (a file named directly is tried whatever its extension). Formats that Pillow or
# OpenCV decode: JPEG, PNG, BMP, TIFF, WebP, GIF, the PNM family, JPEG 2000, AVIF, TGA, ICO, PSD,
# QOI, SGI, Sun raster, PCX, DDS, Radiance HDR.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".jp2", ".j2k", ".j2c", ".jpc", ".jpf", ".jpx", ".avif",
    ".tga", ".ico", ".psd", ".qoi", ".sgi", ".ras", ".sr", ".pcx", ".dds", ".hdr", ".pic"})


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any decoded array -> ``(H, W, 3)`` uint8 RGB, one rule for every decoder: 16- and 32-bit
    integers over 255 are scaled down (``/ 257``, or by their maximum beyond 65535); floats in
    [0, 1] are scaled by 255, other floats clipped to [0, 255] (NaN as 0); gray is repeated; alpha is
    composited over white, as a viewer shows it."""
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        top = int(array.max(initial=0))
        if top > 65535:
            array = np.clip(array.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
        elif top > 255:
            array = np.clip(array / 257.0, 0, 255).round().astype(np.uint8)
        else:
            array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] in (2, 4):  # gray + alpha, RGB + alpha: composite over white
        alpha = array[:, :, -1:].astype(np.float32) / 255.0
        color = array[:, :, :1] if array.shape[2] == 2 else array[:, :, :3]
        out = (color * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
        return np.repeat(out, 3, axis=2) if array.shape[2] == 2 else out
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


# Pillow's own bomb guard (a raw DecompressionBombWarning at 89 MP, an error at 179 MP) is replaced
# by one policy, ``check_pixels``, applied to every decoder and said in the file's own warning.
Image.MAX_IMAGE_PIXELS = None
# Formats Pillow reads in full: when it cannot, the file is damaged, and OpenCV would decode it anyway
# (a truncated JPEG comes back grey-filled) while libjpeg / libpng print their own lines on stderr.
_PILLOW_ONLY_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
_PILLOW_ONLY_FORMATS = {"JPEG", "MPO", "PNG", "GIF"}


def check_pixels(path: str | Path, width: int, height: int, max_megapixels: float | None) -> None:
    """Refuse an image of more than ``max_megapixels`` million pixels (``None``: no limit) before it is
    decoded: a small file can hold a huge image (a decompression bomb). Raises ``DBNetError``."""
    if max_megapixels is not None and width * height > max_megapixels * 1e6:
        raise DBNetError(f"{path}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is over "
                         f"the {max_megapixels:g}-megapixel limit (a decompression bomb?); "
                         "--max-megapixels raises the limit")


UNKNOWN_SIZE_WORDS = "size cannot be read before decoding"  # in check_file_pixels' refusal


def check_file_pixels(path: Path, name: str | Path, max_megapixels: float | None) -> None:
    """The one size check of an image file, before any decoder allocates its pixels (the CLI, the API
    and ``dbnet serve``'s uploads): its ``(width, height)`` from its header (``dbcli.image_size``)
    against ``max_megapixels`` (``None``: no check). A file whose header gives no size but that OpenCV
    would decode (a format OpenCV alone reads) is refused too: OpenCV tells the size only after
    decoding, at any cost. A file no decoder knows passes (its decoder says why it fails). ``name``
    names the file in the message. Raises ``DBNetError``."""
    if max_megapixels is None:
        return
    from dbcli.image_size import file_size

    try:
        size = file_size(path)
    except OSError as exc:
        raise DBNetError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if size is not None:
        check_pixels(name, size[0], size[1], max_megapixels)
    elif cv2.haveImageReader(str(path)):
        raise DBNetError(f"{name}: the image {UNKNOWN_SIZE_WORDS} (a format only OpenCV reads, with no "
                         f"size in its header), so it is not decoded under the {max_megapixels:g}-megapixel "
                         "limit; convert it to PNG or TIFF")


def _is_truncation(exc: Exception) -> bool:
    """Pillow's complaint about a file that ends before its image data does."""
    return "truncated" in str(exc).lower() or isinstance(exc, EOFError)


LARGE_PIXELS = 1 << 25  # (33.5 MP) larger images are copied out of Pillow in strips ...
STRIP_PIXELS = 1 << 22  # ... of about this many pixels


def pillow_to_numpy(img: Image.Image, large: int = LARGE_PIXELS, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """``np.asarray(img)`` for an 8-bit ``L``, ``RGB`` or ``RGBA`` image; one of more than ``large``
    pixels is copied in horizontal strips of about ``strip_pixels`` pixels: ``np.asarray`` goes
    through ``tobytes``, whose chunks and joined copy cost twice the image's size on top of Pillow's
    own (850 MB more for a 12000x12000 photo)."""
    width, height = img.size
    if width * height <= large:
        return np.asarray(img)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[img.mode]
    out = np.empty((height, width, channels) if channels > 1 else (height, width), np.uint8)
    rows = max(1, strip_pixels // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        out[top:bottom] = np.asarray(img.crop((0, top, width, bottom)))
    return out


# Pillow says what it skips in damaged metadata (corrupt EXIF) with raw ``UserWarning`` lines; they are
# caught while a file's header and EXIF are read and said as one note naming the file. The lock keeps
# the decode threads from changing the warning filters under each other.
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def pillow_warnings(name: str, notes: list[str]) -> Iterator[None]:
    """Pillow's warnings inside the block become one note in ``notes`` naming ``name``; others are
    passed on as they are."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    ours = [w for w in caught if "PIL" in (w.filename or "") or "PIL" in str(w.category.__module__)]
    for w in caught:
        if w not in ours:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if ours:
        more = f" (and {len(ours) - 1} more)" if len(ours) > 1 else ""
        notes.append(f"{name}: damaged metadata ignored, the pixels decoded as they are (Pillow: "
                     f"{str(ours[0].message).splitlines()[0]}{more})")


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # EXIF too damaged to read: the pixels as stored
        return 1
    return value if isinstance(value, int) else 1


def _pillow_array(img: Image.Image, exif: bool) -> np.ndarray:
    """The pixels of an open Pillow image (EXIF orientation applied when ``exif``): ``(H, W)``,
    ``(H, W, 3)`` or ``(H, W, 4)``, uint8 except uint16 / int32 for 16- and 32-bit integer modes and
    float32 for mode F (``to_rgb_uint8`` scales them)."""
    if exif and _orientation(img) in range(2, 9):  # (exif_transpose copies even when upright)
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.uint16)
    if img.mode == "I":
        return np.asarray(img, dtype=np.int32)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode in ("RGB", "L", "RGBA"):
        return pillow_to_numpy(img)
    if img.mode == "La":  # premultiplied gray + alpha: Pillow converts it to LA only
        img = img.convert("LA")
    if img.mode in ("LA", "PA", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        return pillow_to_numpy(img.convert("RGBA"))
    return pillow_to_numpy(img.convert("RGB"))


def image_to_rgb(image: Any, exif: bool = True, name: str = "<image>",
                 max_megapixels: float | None = defaults.MAX_MEGAPIXELS) -> tuple[np.ndarray, list[str]]:
    """An in-memory image -> ``(H, W, 3)`` uint8 RGB and notes, decoded as ``decode_image`` decodes a
    file: a PIL image of any mode (alpha and transparency composited over white, ``I;16`` / ``I`` /
    ``F`` scaled, its EXIF orientation applied when ``exif``), or a uint8 numpy array ``(H, W)`` gray,
    ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (uint16 too, as a 16-bit file). ``name`` names the image in
    notes and errors. Raises ``DBNetError``."""
    if isinstance(image, np.ndarray):
        shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
        if not shape_ok or image.dtype not in (np.uint8, np.uint16) or min(image.shape[:2], default=0) < 1:
            raise DBNetError(f"{name}: expected an (H, W, 3) uint8 RGB array ((H, W) gray and (H, W, 4) "
                             f"RGBA too), got {image.dtype} {image.shape}")
        return to_rgb_uint8(image), []
    if not isinstance(image, Image.Image):
        raise DBNetError(f"cannot detect in a {type(image).__name__}: give a file path, an (H, W, 3) "
                         "uint8 RGB numpy array or a PIL image")
    if min(image.size) < 1:
        raise DBNetError(f"{name}: empty image ({image.width}x{image.height})")
    check_pixels(name, image.width, image.height, max_megapixels)
    notes: list[str] = []
    try:
        with pillow_warnings(name, notes):
            array = _pillow_array(image, exif)
    except Exception as exc:  # a lazily loaded PIL image whose file is damaged
        raise DBNetError(f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})") from None
    return to_rgb_uint8(array), notes


def _quiet_opencv() -> None:
    """OpenCV's own log lines (e.g. "can't read header") would stand beside our one warning."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # an OpenCV build without the logging module
        pass


def _opencv_array(path: Path, reason: str, max_megapixels: float | None) -> np.ndarray:
    """OpenCV's decoding of ``path`` (formats Pillow cannot read, e.g. float or some 16-bit TIFFs),
    RGB(A) channel order. ``reason``: why Pillow failed, for the error message."""
    _quiet_opencv()
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DBNetError(f"{path}: cannot decode image ({reason})")
    check_pixels(path, array.shape[1], array.shape[0], max_megapixels)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return array


def check_regular_file(path: Path) -> None:
    """Refuse what is not a regular, non-empty image file before anything opens it (a FIFO or a
    device would block or never end: ``dbcli.outputs.atomic.check_regular_file``). A missing file
    passes (the decoder says so). Raises ``DBNetError`` naming the file."""
    from dbcli.files import check_regular_file as check_type

    check_type(path, "image file", missing_ok=True)
    if path.exists() and path.stat().st_size == 0:
        raise DBNetError(f"{path}: empty file (0 bytes)")


def _signature(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


def decode_image(path: str | Path, exif: bool = True, max_megapixels: float | None = defaults.MAX_MEGAPIXELS
                 ) -> tuple[np.ndarray, list[str]]:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB, with notes for the user (an animated or
    multi-page file, of which the first frame is used).

    ``exif=True`` applies the EXIF orientation (what a viewer shows); ``exif=False`` keeps the stored
    pixels (for datasets whose boxes are in stored-pixel coordinates, e.g. MSRA-TD500). Images over
    ``max_megapixels`` million pixels are refused before decoding (``None``: no limit).
    Raises ``DBNetError`` naming the file when it is empty, truncated, too large or undecodable;
    damaged data is never decoded in part.
    """
    path = Path(path)
    check_regular_file(path)
    notes: list[str] = []
    try:
        with pillow_warnings(str(path), notes):
            img = Image.open(path)
            if exif:
                _orientation(img)  # (parses the EXIF now, inside the warnings catch)
    except FileNotFoundError:
        raise DBNetError(f"{path}: no such file") from None
    except Exception as exc:  # PIL raises many types for unknown or corrupt data
        reason = f"{exc.__class__.__name__}: {exc}"
        if _signature(path).startswith(_PILLOW_ONLY_SIGNATURES):
            raise DBNetError(f"{path}: cannot decode image ({reason})") from None
        check_file_pixels(path, path, max_megapixels)  # (OpenCV tells the size only after decoding)
        return to_rgb_uint8(_opencv_array(path, reason, max_megapixels)), notes
    with img:
        check_pixels(path, img.width, img.height, max_megapixels)
        try:
            if img.format != "MPO" and getattr(img, "is_animated", False):  # (MPO: a photo + previews)
                notes.append(f"{path}: an animated or multi-page {img.format} file; only its first frame "
                             "is used")
            array = _pillow_array(img, exif)
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
            if _is_truncation(exc):
                raise DBNetError(f"{path}: truncated image file (the data ends early: {exc})") from None
            if img.format in _PILLOW_ONLY_FORMATS:
                raise DBNetError(f"{path}: cannot decode image ({reason})") from None
            array = _opencv_array(path, reason, max_megapixels)
    if array.size == 0:
        raise DBNetError(f"{path}: empty image")
    return to_rgb_uint8(array), notes


def read_image(path: str | Path, exif: bool = True, max_megapixels: float | None = defaults.MAX_MEGAPIXELS
               ) -> np.ndarray:
    """``decode_image`` without its notes: ``(H, W, 3)`` uint8 RGB. Raises ``DBNetError``."""
    return decode_image(path, exif, max_megapixels)[0]


MAX_SHORT_SIDE = 4096  # the largest --short-side accepted
MAX_MAX_SIDE = 16384  # the largest --max-side accepted


def inference_size(height: int, width: int, short_side: int = defaults.SHORT_SIDE, max_side: int | None = None
                   ) -> tuple[int, int]:
    """Network input size: shorter side scaled to ``short_side``, longer side capped at ``max_side``
    (``None``: ``defaults.MAX_SIDE``), both rounded to multiples of 32 (at least 32), in pixels.
    Returns ``(new_height, new_width)``."""
    cap = defaults.MAX_SIDE if max_side is None else max_side
    scale = short_side / min(height, width)
    if max(height, width) * scale > cap:
        scale = cap / max(height, width)
    new_h = max(32, int(round(height * scale / 32)) * 32)
    new_w = max(32, int(round(width * scale / 32)) * 32)
    return new_h, new_w


def default_cap_note(height: int, width: int, short_side: int, max_side: int | None) -> str | None:
    """A note when the default cap (``max_side`` None) shrinks an image's network input below
    ``short_side`` on its shorter side (a long strip or panorama) *and* shrinks it (its longer side
    is over the cap), else None. A small wide image that the cap leaves enlarged (e.g. 300x30 run at
    4096x416, ~14x) loses nothing to the cap: no note."""
    if max_side is not None or max(height, width) * short_side / min(height, width) <= defaults.MAX_SIDE:
        return None
    if max(height, width) <= defaults.MAX_SIDE:  # still enlarged (or kept) along its longer side
        return None
    new_h, new_w = inference_size(height, width, short_side, None)
    return (f"{width}x{height} pixels: the network input is capped at {new_w}x{new_h} (longer side "
            f"{defaults.MAX_SIDE}, the default --max-side), so small text may be missed")


def normalize(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 normalised network input."""
    out = np.empty((3, *image.shape[:2]), np.float32)
    for c in range(3):  # per channel: writes CHW directly, ~3x faster than HWC math + transpose
        np.subtract(image[:, :, c], MEAN[c], out=out[c], dtype=np.float32)
        out[c] /= STD[c]
    return out


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 ``image`` resized to ``size`` = ``(H', W')`` (area filter when shrinking;
    the image itself when it has that size already)."""
    h, w = image.shape[:2]
    new_h, new_w = size
    if (new_h, new_w) == (h, w):
        return image
    interp = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def prepare(image: np.ndarray, short_side: int = defaults.SHORT_SIDE, max_side: int | None = None) -> np.ndarray:
    """Resize (area filter when shrinking) and normalise: ``(3, H', W')`` float32."""
    height, width = image.shape[:2]
    return normalize(resize_to(image, inference_size(height, width, short_side, max_side)))
