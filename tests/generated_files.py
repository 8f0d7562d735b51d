"""Small generated files for the tests of bad inputs, big images and error messages: images with a
known rectangle of text, JPEGs that can be cut short, PNGs of any size streamed through zlib; and
``invoke`` (the CLI in-process) with ``warnings_about`` (its warning lines naming a file)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from no_torch import CLI as TORCH_BLOCKER  # noqa: F401  (the CLI with torch refused: `python -c`)
from planted_model import rect_image
from typer.testing import CliRunner

from dbcli.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def warnings_about(result, name: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if name in line and "warning" in line]


def write_rgb(path: Path, width: int = 200, height: int = 150, rects=((30, 40, 160, 75),)) -> Path:
    img = rect_image(width, height, list(rects))
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def noisy_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A JPEG of a few tens of KB (noise keeps it from compressing to nothing)."""
    img = rect_image(width, height, [(30, 40, 200, 90)]).astype(np.int16)
    img += np.random.default_rng(0).integers(-40, 40, img.shape, dtype=np.int16)
    return cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def streamed_png(path: Path, width: int, height: int, row, channels: int = 3) -> Path:
    """A valid 8-bit PNG (grey or RGB) of any size written row by row through zlib, so that a huge,
    uniform image costs a few MB of memory and well under a second. ``row(y)`` -> pixel bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = {1: 0, 3: 2}[channels]
    packer = zlib.compressobj(1)
    parts = []
    for y in range(height):
        parts.append(packer.compress(b"\0" + row(y)))
    parts.append(packer.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    return path


def gray_png(path: Path, width: int, height: int, value: int = 255) -> Path:
    line = bytes([value]) * width
    return streamed_png(path, width, height, lambda y: line, channels=1)


def text_images(folder: Path, count: int = 5) -> list[Path]:
    """``count`` PNGs of different widths, each with one rectangle of text, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_rgb(folder / f"img{i}.png", 120 + 8 * i, 100, [(10, 20, 90, 45)]) for i in range(count)]




def raw_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF file of the given object bodies (object 1 the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def encrypted_pdf() -> bytes:
    """A one-page PDF under the standard security handler whose user password is not empty (its
    check value is random bytes, so no password opens it)."""
    hexbytes = lambda n: b"<" + os.urandom(n).hex().encode() + b">"  # noqa: E731
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
                    b"<< /Filter /Standard /V 1 /R 2 /O " + hexbytes(32) + b" /U " + hexbytes(32) + b" /P -4 >>"],
                   b"/Encrypt 4 0 R /ID [" + hexbytes(16) + b" " + hexbytes(16) + b"] ")
