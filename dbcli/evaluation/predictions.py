"""Predictions files (``dbnet detect``'s JSON or JSON Lines output): one reader, checked, and one
rule for finding an image's entry, shared by ``dbnet eval --pred`` and ``dbnet visualize --pred``."""

from __future__ import annotations

import errno
import filecmp
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dbcli.errors import DBNetError
from dbcli.files import check_regular_file


def _json_lines(path: Path, text: str) -> list:
    data = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                data.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                raise DBNetError(f"{path}:{lineno}: not a JSON line ({exc})") from None
    return data


def _looks_like_jsonl(text: str) -> bool:
    """Whether the first non-blank line is a JSON object of its own (a JSON Lines file)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _is_number(value) -> bool:
    """A finite JSON number (``true`` and ``"12"`` are not; Python's json reads ``NaN`` as a float)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _points_array(points) -> np.ndarray | None:
    """``(K, 2)`` float64 from a list of at least 3 ``[x, y]`` pairs of finite numbers, else None."""
    if not isinstance(points, list) or len(points) < 3:
        return None
    if not all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p)) for p in points):
        return None
    return np.asarray(points, dtype=np.float64)


def _read_json(path: Path) -> Any:
    """The parsed JSON (or JSON Lines) of a predictions file; ``DBNetError`` naming it."""
    check_regular_file(path, "predictions file", missing_ok=True)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DBNetError(f"{path}: no such predictions file") from None
    except UnicodeDecodeError as exc:
        raise DBNetError(f"{path}: not a JSON predictions file ({exc})") from None
    if path.suffix.lower() == ".jsonl":  # dbnet detect --format jsonl: one image entry per line
        return _json_lines(path, text)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        if not _looks_like_jsonl(text):
            raise DBNetError(f"{path}: not a JSON predictions file ({exc})") from None
        return _json_lines(path, text)  # JSON Lines under another name


def _checked_detection(det: Any, where: str) -> tuple[np.ndarray, float]:
    """One detection's ``(points (K, 2) float64, score)``; ``DBNetError`` at ``where`` when malformed."""
    points = det.get("points") if isinstance(det, dict) else det
    arr = _points_array(points)
    if arr is None:
        raise DBNetError(f"{where}: \"points\" must be a list of at least 3 [x, y] pairs of finite numbers")
    score = det.get("score", 1.0) if isinstance(det, dict) else 1.0
    if not _is_number(score):
        raise DBNetError(f"{where}: \"score\" must be a finite number, got {json.dumps(score)}")
    return arr, float(score)


def _checked_entry(entry: Any, where: str) -> dict:
    """One image entry as ``{"file", "width", "height", "polygons", "scores"}``; ``DBNetError`` at ``where``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise DBNetError(f"{where}: each entry needs a \"file\" string")
    dets = entry.get("detections", [])
    if not isinstance(dets, list):
        raise DBNetError(f"{where} ({entry['file']}): \"detections\" must be a list")
    checked = [_checked_detection(det, f"{where}.detections[{j}] ({entry['file']})") for j, det in enumerate(dets)]
    return {"file": entry["file"], "width": entry.get("width"), "height": entry.get("height"),
            "polygons": [arr for arr, _ in checked], "scores": [score for _, score in checked]}


def load_predictions(path: str | Path) -> list[dict]:
    """Read a ``dbnet detect`` JSON file: ``{"images": [{"file": ..., "width": W, "height": H,
    "detections": [{"points": [[x, y], ...], "score": s}, ...]}, ...]}``. A bare list of image
    entries is accepted too, and a ``.jsonl`` file holds one image entry per line (``dbnet detect
    --format jsonl``). Returns the image entries, each checked; ``DBNetError`` names the file
    and the entry at fault."""
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, dict) and "images" not in data and "file" in data:
        data = [data]  # a JSON Lines file of one line
    entries = data.get("images") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise DBNetError(f"{path}: expected an object with an \"images\" list (dbnet detect's format)")
    return [_checked_entry(entry, f"{path}: images[{i}]") for i, entry in enumerate(entries)]


def image_size(path: Path, exif: bool) -> tuple[int, int] | None:
    """(width, height) as decoded (EXIF orientation applied when ``exif``), from the header only."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            w, h = img.size
            if exif and img.getexif().get(0x0112) in (5, 6, 7, 8):
                w, h = h, w
            return w, h
    except Exception:
        return None


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: no path can match it
        return str(path.absolute())


def _recorded_file(file: str, base: Path | None) -> Path | None:
    """The file an entry names, where one is here: as written (relative to the working directory),
    else relative to ``base`` (the predictions file's folder); None when neither exists."""
    for candidate in (Path(file), (base / file) if base is not None else None):
        try:
            if candidate is not None and candidate.is_file():
                return candidate
        except OSError:
            continue
    return None


def _same_image(a: Path, b: Path) -> bool:
    """Whether two files are the same file or hold the same bytes."""
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


class PredictionIndex:
    """Finds the predictions entry of an image: the same resolved path, else the same file name, else
    the same file stem (both case-insensitive). A name or stem that several entries share raises
    ``DBNetError`` (write paths that identify the images)."""

    def __init__(self, entries: list[dict], source: str = "predictions"):
        self.entries, self.source = entries, source
        self.by_path: dict[str, int] = {}
        self.by_name: dict[str, list[int]] = {}
        self.by_stem: dict[str, list[int]] = {}
        for i, e in enumerate(entries):
            p = Path(e["file"])
            try:
                self.by_path.setdefault(str(p.resolve()), i)
            except RuntimeError:  # (Python < 3.13: a symlink loop)
                raise DBNetError(f"{source}: images[{i}] names {e['file']}, a symbolic link that points back "
                                 "at itself (a loop), not an image") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise DBNetError(f"{source}: images[{i}] names {e['file']}, a symbolic link that points "
                                     "back at itself (a loop), not an image") from None
            self.by_name.setdefault(p.name.lower(), []).append(i)
            self.by_stem.setdefault(p.stem.lower(), []).append(i)

    def position(self, image: Path) -> int | None:
        """The index of ``image``'s entry in ``entries``, or None."""
        image = Path(image)
        i = self.by_path.get(_resolved(image))
        if i is not None:
            return i
        for table, key in ((self.by_name, image.name.lower()), (self.by_stem, image.stem.lower())):
            candidates = table.get(key, [])
            if len(candidates) > 1:
                files = ", ".join(self.entries[c]["file"] for c in candidates[:3])
                raise DBNetError(f"{self.source}: several predictions could be {image.name} "
                                 f"({files}); write paths that identify the images")
            if candidates:
                return candidates[0]
        return None

    def find(self, image: Path) -> dict | None:
        """``image``'s entry, or None."""
        i = self.position(image)
        return self.entries[i] if i is not None else None


def match_predictions(samples: Sequence[Any], entries: list[dict], source: str = "predictions",
                      base: Path | None = None) -> tuple[list[dict | None], list[str]]:
    """For each sample (anything with an ``image_path``), its prediction entry (or None), found by
    ``PredictionIndex``. Returns (per-sample entries, files of entries that matched no sample).
    Raises ``DBNetError`` when two samples match the same entry, or when entries matched by file name
    alone name other files that are here, with other contents (predictions made on the train split's
    ``img_1.jpg`` scored against the test split's ``img_1.jpg``). ``base``: the predictions file's
    folder, where relative paths in it are looked up too."""
    index = PredictionIndex(entries, source)
    used: dict[int, Path] = {}
    matched: list[dict | None] = []
    elsewhere: list[str] = []
    for s in samples:
        i = index.position(s.image_path)
        if i is not None and i in used:
            raise DBNetError(f"{source}: the prediction for {entries[i]['file']} matches both "
                             f"{used[i]} and {s.image_path}")
        if i is not None:
            used[i] = s.image_path
            if index.by_path.get(_resolved(Path(s.image_path))) != i:  # matched by name only
                recorded = _recorded_file(entries[i]["file"], base)
                if recorded is not None and not _same_image(recorded, Path(s.image_path)):
                    elsewhere.append(f"{entries[i]['file']} is not {s.image_path}")
        matched.append(entries[i] if i is not None else None)
    if elsewhere:
        raise DBNetError(f"{source}: {len(elsewhere)} of its predictions were made on other images with the same "
                         f"names ({'; '.join(elsewhere[:3])}{' ...' if len(elsewhere) > 3 else ''}); score the "
                         "images the predictions were made on (another --split or --data-root?)")
    unmatched = [e["file"] for i, e in enumerate(entries) if i not in used]
    return matched, unmatched
