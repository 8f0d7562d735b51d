"""What every dataset reader shares: ``Sample``, text-file reading, ICDAR-style ground-truth lines and
the image listing of a folder. ``dbcli.data.datasets`` (icdar15, custom, the entry point) and
``dbcli.data.formats`` (td500, totaltext, ctw1500) both build on it; neither imports the other's
internals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dbcli.errors import DBNetError
from dbcli.files import check_regular_file
from dbcli.imaging import IMAGE_EXTENSIONS


@dataclass
class Sample:
    image_path: Path
    polygons: list[np.ndarray] = field(default_factory=list)  # each (K, 2) float64 pixels
    ignore: list[bool] = field(default_factory=list)  # don't-care flags
    exif: bool = True  # apply EXIF orientation when decoding (False: boxes are in stored pixels)
    texts: list[str] | None = None  # each polygon's transcription ("###": don't care); None: none given


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 (BOM tolerated) text file, CRLF/CR stripped (a FIFO or device refused)."""
    check_regular_file(path, "text file", missing_ok=True)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DBNetError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text.splitlines()


def leading_numbers(fields: list[str]) -> list[float]:
    """The numeric fields at the start of a split line, up to the first non-number."""
    numbers = []
    for f in fields:
        try:
            numbers.append(float(f))
        except ValueError:
            break
    return numbers


def parse_icdar_gt(path: Path, num_coords: int | None = 8) -> tuple[list[np.ndarray], list[bool]]:
    """ICDAR-style lines ``x1,y1,...,xn,yn,transcription`` (transcription may contain commas).

    ``num_coords=8`` reads quadrilaterals (ICDAR 2015, SROIE); ``None`` takes every leading numeric
    field as a coordinate (variable-length polygons). ``###`` marks don't-care.
    """
    polygons, ignore, _ = parse_icdar_gt_texts(path, num_coords)
    return polygons, ignore


def parse_icdar_gt_texts(path: Path, num_coords: int | None = 8) -> tuple[list[np.ndarray], list[bool], list[str]]:
    """``parse_icdar_gt`` with each polygon's transcription (the rest of its line, commas kept)."""
    polygons, ignore, texts = [], [], []
    for lineno, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        fields = line.split(",")
        if num_coords is None:
            coords = leading_numbers(fields)
            n = len(coords) - len(coords) % 2
            coords, rest = coords[:n], fields[n:]
        else:
            if len(fields) < num_coords:
                raise DBNetError(f"{path}:{lineno}: expected {num_coords} coordinates and a "
                                 f"transcription, got {len(fields)} fields")
            try:
                coords = [float(f) for f in fields[:num_coords]]
            except ValueError:
                raise DBNetError(f"{path}:{lineno}: non-numeric coordinate in {line[:60]!r}") from None
            rest = fields[num_coords:]
        if len(coords) < 6:
            raise DBNetError(f"{path}:{lineno}: a polygon needs at least 3 points")
        if not all(math.isfinite(v) for v in coords):  # float() reads "nan" and "inf"
            raise DBNetError(f"{path}:{lineno}: non-finite coordinate in {line[:60]!r}")
        text = ",".join(rest).strip()
        polygons.append(np.array(coords, np.float64).reshape(-1, 2))
        ignore.append(text == "###")
        texts.append(text)
    return polygons, ignore, texts


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: (len(p.stem), p.stem))
