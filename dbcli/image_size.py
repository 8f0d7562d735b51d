"""An image file's size in pixels from its header, before any decoder allocates its pixels.

Pillow reads the header of the formats it decodes (``Image.open`` reads no pixel data); OpenCV,
which dbnet falls back to for formats Pillow refuses, decodes first and tells the size after (a 25 MB
Radiance file of 20000x20000 took 10 GB). So for the formats OpenCV reads and Pillow does not, the
size is read here by small parsers: TIFF and BigTIFF (float and other sample formats Pillow refuses:
the first image's ``ImageWidth`` / ``ImageLength``, which is the image OpenCV decodes), Radiance
``.hdr`` / ``.pic`` (its resolution line) and the Netpbm family's text headers (``P1``-``P7``, PFM's
``PF`` / ``Pf``). ``file_size`` gives ``(width, height)`` or None when no header says it; a caller
with a pixel limit refuses such a file instead of decoding it.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

HEAD = 1 << 16  # bytes read for the text headers (Radiance, Netpbm)
_RADIANCE_SIZE = re.compile(rb"\n([-+])([YX]) (\d+) ([-+])([YX]) (\d+)\n")
_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8
_WIDTH, _LENGTH = 256, 257


def pillow_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from Pillow's reading of the header, or None when Pillow does not know
    the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except Exception:  # Pillow raises many types for foreign files
        return None


def _tiff_entries(f, order: str, big: bool) -> dict[int, int]:
    """The ``ImageWidth`` / ``ImageLength`` entries of a TIFF file's first image (``f`` at byte 4)."""
    if big:
        _, _, offset = struct.unpack(order + "HHQ", f.read(12))
        f.seek(offset)
        (count,) = struct.unpack(order + "Q", f.read(8))
        entry, count_fmt = 20, "Q"
    else:
        (offset,) = struct.unpack(order + "I", f.read(4))
        f.seek(offset)
        (count,) = struct.unpack(order + "H", f.read(2))
        entry, count_fmt = 12, "I"
    found: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        raw = f.read(entry)
        if len(raw) < entry:
            break
        tag, kind = struct.unpack(order + "HH", raw[:4])
        if tag in (_WIDTH, _LENGTH) and kind in _TIFF_TYPES:
            fmt, _size = _TIFF_TYPES[kind]
            value_at = 4 + struct.calcsize(count_fmt)
            found[tag] = struct.unpack(order + fmt, raw[value_at:value_at + _size])[0]
    return found


def tiff_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of a TIFF or BigTIFF file's first image, or None."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return None
        order = "<" if head[:2] == b"II" else ">"
        try:
            found = _tiff_entries(f, order, head[2:] in (b"+\0", b"\0+"))
        except (struct.error, OSError, ValueError, OverflowError):
            return None
    if _WIDTH in found and _LENGTH in found:
        return int(found[_WIDTH]), int(found[_LENGTH])
    return None


def radiance_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a Radiance header (``#?RADIANCE`` ... a blank line, then ``-Y 40 +X 60``)."""
    if not head.startswith(b"#?"):
        return None
    end = head.find(b"\n\n")
    match = _RADIANCE_SIZE.match(head, end + 1) if end >= 0 else None
    if match is None or match.group(2) == match.group(5):
        return None
    first, second = int(match.group(3)), int(match.group(6))
    return (second, first) if match.group(2) == b"Y" else (first, second)


def netpbm_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a Netpbm header: ``P1``-``P6`` and PFM (``PF``, ``Pf``) give them as
    the first two numbers (``#`` comments skipped), PAM (``P7``) as ``WIDTH`` / ``HEIGHT`` lines."""
    if len(head) < 3 or head[:1] != b"P" or head[1:2] not in b"1234567Ff" or not head[2:3].isspace():
        return None
    text = re.sub(rb"#[^\n]*", b" ", head[2:])
    if head[1:2] == b"7":
        width, height = re.search(rb"\bWIDTH\s+(\d+)", text), re.search(rb"\bHEIGHT\s+(\d+)", text)
        return (int(width.group(1)), int(height.group(1))) if width and height else None
    numbers = re.match(rb"\s*(\d+)\s+(\d+)\s", text)
    return (int(numbers.group(1)), int(numbers.group(2))) if numbers else None


def file_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of the image in ``path`` read from its header (Pillow's reading, else this
    module's parsers), or None when no header says it. Reads at most ``HEAD`` bytes besides a TIFF's
    directory. Raises ``OSError`` when the file cannot be read."""
    size = pillow_size(path)
    if size is not None:
        return size
    size = tiff_size(path)
    if size is not None:
        return size
    with open(path, "rb") as f:
        head = f.read(HEAD)
    return radiance_size(head) or netpbm_size(head)
