"""MSRA-TD500, Total-Text and CTW1500 readers (SPEC: "Datasets and their annotation formats").

Each ``load_*(root, split)`` returns a list of ``Sample`` for ``split`` (``train`` or ``test``).
Folders are looked up among the layouts these datasets are distributed in (official archives and the
``train_images/ train_gts/`` layout of the DBNet authors' preprocessed copies), case-insensitively.
A malformed annotation line raises ``DBNetError`` naming the file and line; text files may carry a
UTF-8 BOM and CRLF line ends. Images are not decoded here: training reports and skips undecodable
images (``dbcli.data.image_cache``, ``dbcli.training.data``), ``dbnet eval`` reports and skips them.
"""

from __future__ import annotations

import ast
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from dbcli.data.sample import Sample, leading_numbers, list_images, parse_icdar_gt, read_text_lines
from dbcli.errors import DBNetError
from dbcli.files import check_regular_file


# --- folder lookup --------------------------------------------------------------------------------
def _resolve(root: Path, relative: str) -> Path | None:
    """``root / relative`` as a directory, matching each component case-insensitively."""
    path = root
    for part in Path(relative).parts:
        exact = path / part
        if exact.is_dir():
            path = exact
            continue
        try:
            matches = [p for p in path.iterdir() if p.is_dir() and p.name.lower() == part.lower()]
        except OSError:
            return None
        if not matches:
            return None
        path = sorted(matches)[0]
    return path


def _existing_dirs(root: Path, candidates: list[str]) -> list[Path]:
    found: list[Path] = []
    for rel in candidates:
        d = _resolve(root, rel)
        if d is not None and d not in found:
            found.append(d)
    return found


def _require_images(root: Path, dataset: str, split: str, candidates: list[str]) -> Path:
    found = _existing_dirs(root, candidates)
    if not found:
        raise DBNetError(f"{root}: no {dataset} {split} images folder (looked for "
                         f"{', '.join(c + '/' for c in candidates)})")
    return found[0]


def _find_gt(gt_dirs: list[Path], names: list[str]) -> Path | None:
    """The first of ``names`` found in ``gt_dirs`` (searched in order), or None."""
    for d in gt_dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    return None


def _missing_gt(image: Path, gt_dirs: list[Path], names: list[str]) -> DBNetError:
    where = ", ".join(str(d) for d in gt_dirs)
    return DBNetError(f"{image}: no ground-truth file for this image (looked for "
                      f"{' / '.join(names)} in {where})")


def _numbers(text: str, path: Path, lineno: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in re.split(r"[\s,]+", text.strip()) if v]
    except ValueError:
        raise DBNetError(f"{path}:{lineno}: non-numeric {what} in {text.strip()[:60]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise DBNetError(f"{path}:{lineno}: non-finite {what} in {text.strip()[:60]!r}")
    return values


# --- MSRA-TD500 -----------------------------------------------------------------------------------
def td500_box(x: float, y: float, w: float, h: float, theta: float) -> np.ndarray:
    """Corners of the box ``(x, y, w, h)`` (top-left corner, unrotated size) rotated by ``theta``
    radians about its centre, in image coordinates (y down, so positive theta turns clockwise on
    screen): ``[tl, tr, br, bl]`` of the unrotated box, rotated. ``(4, 2)`` float64."""
    cx, cy = x + w / 2.0, y + h / 2.0
    offsets = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2.0
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    return offsets @ rotation.T + (cx, cy)


def parse_td500_gt(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    """``index difficult x y w h theta`` per line (whitespace separated); ``difficult`` 1 =
    don't care."""
    polygons, ignore = [], []
    for lineno, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 7:
            raise DBNetError(f"{path}:{lineno}: expected 7 fields 'index difficult x y w h theta', "
                             f"got {len(fields)}")
        try:
            difficult = int(float(fields[1]))
            x, y, w, h, theta = (float(v) for v in fields[2:])
        except ValueError:
            raise DBNetError(f"{path}:{lineno}: non-numeric field in {line.strip()[:60]!r}") from None
        if difficult not in (0, 1):
            raise DBNetError(f"{path}:{lineno}: difficult flag must be 0 or 1, got {fields[1]!r}")
        if not all(math.isfinite(v) for v in (x, y, w, h, theta)) or w < 0 or h < 0:
            raise DBNetError(f"{path}:{lineno}: bad box geometry in {line.strip()[:60]!r}")
        polygons.append(td500_box(x, y, w, h, theta))
        ignore.append(difficult == 1)
    return polygons, ignore


def load_td500(root: Path, split: str) -> list[Sample]:
    """MSRA-TD500: ``train/`` and ``test/`` folders holding ``IMG_xxxx.JPG`` and ``IMG_xxxx.gt``.
    Images are read WITHOUT applying their EXIF orientation (``Sample.exif=False``): the boxes are
    in stored-pixel coordinates."""
    folder = _require_images(root, "MSRA-TD500", split, [split, f"MSRA-TD500/{split}"])
    samples = []
    for image in list_images(folder):
        gt = _find_gt([folder], [f"{image.stem}.gt", f"{image.name}.gt"])
        if gt is None:
            raise _missing_gt(image, [folder], [f"{image.stem}.gt"])
        polygons, ignore = parse_td500_gt(gt)
        samples.append(Sample(image, polygons, ignore, exif=False))
    return samples


# --- Total-Text -----------------------------------------------------------------------------------
_TT_RECORD = re.compile(
    r"^x:\s*\[\[(?P<x>[^\[\]]*)\]\]\s*,\s*y:\s*\[\[(?P<y>[^\[\]]*)\]\]\s*"
    r"(?:,\s*ornt:\s*\[(?P<ornt>[^\]]*)\]\s*)?"
    r"(?:,\s*transcriptions:\s*\[(?P<text>.*)\]\s*)?,?\s*$")
TOTALTEXT_IGNORE = ("#", "###")


def _tt_transcription(raw: str) -> str:
    raw = raw.strip()
    if not raw:
        return ""
    try:
        value = ast.literal_eval(f"[{raw}]")
        if all(isinstance(v, str) for v in value):
            return ",".join(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    m = re.match(r"""^u?(['"])(.*)\1$""", raw, re.S)
    return m.group(2) if m else raw


def parse_totaltext_gt(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    """Total-Text txt ground truth: records ``x: [[x1 x2 ...]], y: [[y1 y2 ...]], ornt: [u'c'],
    transcriptions: [u'text']``; a record may be wrapped over several physical lines (a new record
    starts with ``x:``). Transcription ``#`` = don't care.

    Files that do not start with ``x:`` are read as comma-separated polygons
    ``x1,y1,...,xn,yn,text`` (the DBNet authors' converted copies, ``###`` = don't care)."""
    lines = read_text_lines(path)
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if first and not first.startswith("x:"):
        return parse_icdar_gt(path, num_coords=None)
    records: list[list] = []  # [first line number, joined text]
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("x:"):
            records.append([lineno, s])
        else:
            records[-1][1] += " " + s
    polygons, ignore = [], []
    for lineno, text in records:
        m = _TT_RECORD.match(text)
        if m is None:
            raise DBNetError(f"{path}:{lineno}: not a Total-Text record "
                             f"(x: [[...]], y: [[...]], ornt: [...], transcriptions: [...]): {text[:80]!r}")
        xs = _numbers(m.group("x"), path, lineno, "x coordinate")
        ys = _numbers(m.group("y"), path, lineno, "y coordinate")
        if len(xs) != len(ys):
            raise DBNetError(f"{path}:{lineno}: {len(xs)} x coordinates but {len(ys)} y coordinates")
        if len(xs) < 3:
            raise DBNetError(f"{path}:{lineno}: a polygon needs at least 3 points, got {len(xs)}")
        transcription = _tt_transcription(m.group("text") or "")
        polygons.append(np.stack([xs, ys], axis=1).astype(np.float64))
        ignore.append(transcription.strip() in TOTALTEXT_IGNORE)
    return polygons, ignore


def load_totaltext(root: Path, split: str) -> list[Sample]:
    """Total-Text: images in ``Images/Train|Test`` (or ``train_images/``), ground truth
    ``gt_<name>.txt`` / ``poly_gt_<name>.txt`` in ``Groundtruth/Polygon/Train|Test``,
    ``Groundtruth/Text/Train|Test``, ``txt_format/Train|Test`` (or ``<image name>.txt`` in
    ``train_gts/``)."""
    s = split
    images = _require_images(root, "Total-Text", split,
                             [f"Images/{s}", f"{s}_images", f"totaltext/Images/{s}", f"Total-Text/Images/{s}",
                              f"imgs/{s}", f"images/{s}"])
    gt_dirs = _existing_dirs(root, [
        f"Groundtruth/Polygon/{s}", f"Groundtruth/Text/{s}", f"Groundtruth/Text/Legacy/{s}",
        f"Groundtruth/{s}", f"txt_format/{s}", f"gt/{s}", f"gts/{s}", f"annotations/{s}", f"{s}_gts",
        f"totaltext/Groundtruth/Polygon/{s}", f"totaltext/Groundtruth/Text/{s}",
        f"Total-Text/Groundtruth/Polygon/{s}", f"Total-Text/Groundtruth/Text/{s}"])
    if not gt_dirs:
        raise DBNetError(f"{root}: no Total-Text {split} ground-truth folder (looked for "
                         f"Groundtruth/Polygon/{s}/, Groundtruth/Text/{s}/, txt_format/{s}/, {s}_gts/)")
    samples = []
    for image in list_images(images):
        names = [f"gt_{image.stem}.txt", f"poly_gt_{image.stem}.txt", f"{image.name}.txt", f"{image.stem}.txt"]
        gt = _find_gt(gt_dirs, names)
        if gt is None:
            if _find_gt(gt_dirs, [f"poly_gt_{image.stem}.mat", f"gt_{image.stem}.mat"]):
                raise DBNetError(f"{image}: only MATLAB .mat ground truth found; use Total-Text's txt "
                                 "ground truth (Groundtruth/Text or txt_format)")
            raise _missing_gt(image, gt_dirs, names[:2])
        polygons, ignore = parse_totaltext_gt(gt)
        samples.append(Sample(image, polygons, ignore))
    return samples


# --- CTW1500 --------------------------------------------------------------------------------------
CTW_IGNORE = "###"


def parse_ctw1500_gt(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    """SCUT-CTW1500 ground truth, one text region per line, in any of its releases:

    * curved txt release: ``x1,y1,...,x14,y14,####text``. The four ``#`` are a separator, not part
      of the transcription: we split at the first ``,####`` and strip exactly those four; a
      remaining transcription of ``###`` (a line ending in ``,#######``) is don't care. Commas in
      the transcription are kept.
    * original training labels: 32 numbers and no text, ``xmin,ymin,xmax,ymax`` then 14 points as
      offsets from ``(xmin, ymin)``.
    * converted copies ``x1,y1,...,xn,yn,text`` (``###`` = don't care).
    * the XML training labels (``<box><label>text</label><segs>x1,y1,...</segs></box>``) when the
      file ends in ``.xml``.
    """
    if path.suffix.lower() == ".xml":
        return _parse_ctw1500_xml(path)
    polygons, ignore = [], []
    for lineno, line in enumerate(read_text_lines(path), 1):
        s = line.strip()
        if not s:
            continue
        if ",####" in s:
            coords_text, transcription = s.split(",####", 1)
            coords = _numbers(coords_text, path, lineno, "coordinate")
        else:
            fields = s.split(",")
            coords = leading_numbers(fields)
            rest = fields[len(coords):]
            if len(coords) == 32 and not rest:  # bbox + 14 offset points
                xmin, ymin = coords[0], coords[1]
                coords = [v + (xmin if i % 2 == 0 else ymin) for i, v in enumerate(coords[4:])]
            elif len(coords) % 2:  # an odd count: the last number is the transcription
                rest = fields[len(coords) - 1:]
                coords = coords[:-1]
            transcription = ",".join(rest)
            if not all(math.isfinite(v) for v in coords):
                raise DBNetError(f"{path}:{lineno}: non-finite coordinate in {s[:60]!r}")
        if len(coords) % 2:
            raise DBNetError(f"{path}:{lineno}: odd number of coordinates ({len(coords)})")
        if len(coords) < 6:
            raise DBNetError(f"{path}:{lineno}: a polygon needs at least 3 points (expected "
                             f"x1,y1,...,x14,y14,####text), got {s[:60]!r}")
        polygons.append(np.asarray(coords, np.float64).reshape(-1, 2))
        ignore.append(transcription.strip() == CTW_IGNORE)
    return polygons, ignore


def _segs_polygon(segs: str, where: str) -> np.ndarray:
    """A ``<segs>`` text (x, y, x, y, ... separated by commas or newlines) as ``(K, 2)`` float64."""
    try:
        coords = [float(v) for v in segs.replace("\n", ",").split(",") if v.strip()]
    except ValueError:
        raise DBNetError(f"{where}: non-numeric <segs>") from None
    if len(coords) % 2 or len(coords) < 6:
        raise DBNetError(f"{where}: <segs> needs an even number (>= 6) of coordinates")
    if not all(math.isfinite(v) for v in coords):
        raise DBNetError(f"{where}: non-finite coordinate in <segs>")
    return np.asarray(coords, np.float64).reshape(-1, 2)


def _rect_polygon(box: ET.Element, where: str) -> np.ndarray:
    """A ``<box left= top= width= height=>`` as its 4 corners, ``(4, 2)`` float64."""
    try:
        left, top, width, height = (float(box.get(k) or "") for k in ("left", "top", "width", "height"))
    except (TypeError, ValueError):
        raise DBNetError(f"{where}: neither <segs> nor left/top/width/height") from None
    if not all(math.isfinite(v) for v in (left, top, width, height)):
        raise DBNetError(f"{where}: non-finite left/top/width/height")
    return np.array([[left, top], [left + width, top], [left + width, top + height], [left, top + height]],
                    np.float64)


def _parse_ctw1500_xml(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    check_regular_file(path, "XML file", missing_ok=True)
    try:
        tree = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise DBNetError(f"{path}:{line}: invalid XML ({exc})") from None
    polygons, ignore = [], []
    for number, box in enumerate(tree.iter("box"), 1):
        label = (box.findtext("label") or "").strip()
        segs = box.findtext("segs")
        where = f"{path}: box {number}"
        polygons.append(_segs_polygon(segs, where) if segs is not None and segs.strip() else _rect_polygon(box, where))
        ignore.append(label == CTW_IGNORE)
    return polygons, ignore


def load_ctw1500(root: Path, split: str) -> list[Sample]:
    """SCUT-CTW1500: ``train_images/`` / ``test_images/`` (or the official ``train/text_image``)
    and a label folder (``train_gts/``, ``train_labels/``, ``ctw1500_train_labels/``,
    ``train/text_label_curve`` ...) with ``NNNN.txt`` (or ``NNNN.xml``) per image."""
    s = split
    images = _require_images(root, "CTW1500", split,
                             [f"{s}_images", f"{s}/text_image", f"ctw1500/{s}/text_image",
                              f"ctw1500/{s}_images", f"images/{s}", f"imgs/{s}"])
    gt_dirs = _existing_dirs(root, [
        f"{s}_gts", f"{s}_labels", f"ctw1500_{s}_labels", f"{s}/text_label_curve", f"{s}_label_curve",
        f"{s}_label", f"ctw1500/{s}/text_label_curve", f"ctw1500/{s}_gts", f"ctw1500/ctw1500_{s}_labels",
        f"annotations/{s}", f"gts/{s}", f"labels/{s}"])
    if not gt_dirs:
        raise DBNetError(f"{root}: no CTW1500 {split} label folder (looked for {s}_gts/, {s}_labels/, "
                         f"ctw1500_{s}_labels/, {s}/text_label_curve/)")
    samples = []
    for image in list_images(images):
        names = [f"{image.stem}.txt", f"{image.name}.txt", f"gt_{image.stem}.txt", f"{image.stem}.xml"]
        gt = _find_gt(gt_dirs, names)
        if gt is None:
            raise _missing_gt(image, gt_dirs, [names[0], names[3]])
        polygons, ignore = parse_ctw1500_gt(gt)
        samples.append(Sample(image, polygons, ignore))
    return samples
