"""Dataset readers: every format becomes a list of ``Sample`` (image path + polygons + ignore flags).

``load_samples(name, root, split)`` is the one entry point. A malformed annotation raises
``DBNetError`` naming the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dbcli.data import formats  # td500 / totaltext / ctw1500
from dbcli.data.sample import (  # noqa: F401 (public here)
    Sample,
    leading_numbers,
    list_images,
    parse_icdar_gt,
    parse_icdar_gt_texts,
    read_text_lines,
)
from dbcli.errors import DBNetError

DATASETS = ("icdar15", "td500", "totaltext", "ctw1500", "custom")


def _first_dir(root: Path, *names: str) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def load_icdar15(root: Path, split: str) -> list[Sample]:
    """ICDAR 2015: the official release layout or ``train_images/ train_gts/ test_images/ test_gts/``;
    each sample carries its transcriptions (``Sample.texts``, ``###`` = don't care)."""
    if split == "train":
        images = _first_dir(root, "train_images", "ch4_training_images")
        gts = _first_dir(root, "train_gts", "ch4_training_localization_transcription_gt")
    else:
        images = _first_dir(root, "test_images", "ch4_test_images")
        gts = _first_dir(root, "test_gts", "Challenge4_Test_Task1_GT")
    if images is None or gts is None:
        raise DBNetError(f"{root}: no ICDAR 2015 {split} split (expected {split}_images/ and "
                         f"{split}_gts/, or the official ch4_* folders)")
    samples = []
    for image in list_images(images):
        gt = gts / f"gt_{image.stem}.txt"
        if not gt.exists():
            raise DBNetError(f"{gt}: ground truth missing for {image.name}")
        polygons, ignore, texts = parse_icdar_gt_texts(gt)
        samples.append(Sample(image, polygons, ignore, texts=texts))
    return samples


def _json_bool(record: dict, key: str, default: bool) -> bool:
    """``record[key]`` when it is a JSON ``true`` / ``false`` (``default`` when absent); anything else
    (``"false"``, ``0``, ``null``) raises ``ValueError``: the string "false" would count as true."""
    value = record.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"\"{key}\" must be true or false, got {json.dumps(value)}")
    return value


def _custom_polygon(poly: object) -> tuple[np.ndarray, bool, str]:
    """A custom JSONL polygon (``{"points", "ignore", "transcription"}`` or a bare point list): its
    ``(K, 2)`` points, ignore flag and transcription (``_transcription``). Raises ``ValueError``."""
    points = poly["points"] if isinstance(poly, dict) else poly
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
        raise ValueError("a polygon needs at least 3 [x, y] points")
    if not np.isfinite(arr).all():
        raise ValueError(f"non-finite coordinate in {points}")
    ignored = _json_bool(poly, "ignore", False) if isinstance(poly, dict) else False
    return arr, ignored, _transcription(poly, ignored)


def _transcription(poly: object, ignored: bool) -> str:
    """A custom polygon's ``"transcription"`` (a JSON string; ``""`` when absent), ``###`` when ignored."""
    text = poly.get("transcription", "") if isinstance(poly, dict) else ""
    if not isinstance(text, str):
        raise ValueError(f"\"transcription\" must be a string, got {json.dumps(text)}")
    return "###" if ignored else text


def load_custom(root: Path, split: str) -> list[Sample]:
    """JSON Lines: ``{split}.jsonl`` (or ``root`` itself when it is a ``.jsonl`` file), one image per
    line: ``{"image": "rel/or/abs.jpg", "polygons": [{"points": [[x, y], ...], "ignore": false,
    "transcription": "TOTAL"}]}`` (``transcription`` optional: a sample with any gets ``Sample.texts``,
    ``""`` where a polygon has none, ``###`` where it is ignored). A polygon may also be a bare
    ``[[x, y], ...]`` list. Image paths are relative to the file."""
    path = root if root.suffix == ".jsonl" else root / f"{split}.jsonl"
    if not path.exists():
        raise DBNetError(f"{path}: no such annotation file")
    samples = []
    for lineno, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image = Path(record["image"])
            polygons, ignore, texts = [], [], []
            for poly in record.get("polygons", []):
                arr, ignored, text = _custom_polygon(poly)
                polygons.append(arr)
                ignore.append(ignored)
                texts.append(text)
            exif = _json_bool(record, "exif", True)
        except RecursionError:
            raise DBNetError(f"{path}:{lineno}: JSON nested too deeply to read") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DBNetError(f"{path}:{lineno}: {exc.__class__.__name__}: {exc}") from None
        given = any(isinstance(p, dict) and "transcription" in p for p in record.get("polygons", []))
        samples.append(Sample(image if image.is_absolute() else path.parent / image, polygons, ignore, exif=exif,
                              texts=texts if given else None))
    return samples


def _loader(name: str):
    loaders = {"icdar15": load_icdar15, "custom": load_custom, "td500": formats.load_td500,
               "totaltext": formats.load_totaltext, "ctw1500": formats.load_ctw1500}
    if name not in loaders:
        raise DBNetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return loaders[name]


def resolve_root(name: str, data_root: str | Path | None) -> Path:
    """``data_root`` or ``$DBNET_DATA/<name>``."""
    if data_root is None:
        base = os.environ.get("DBNET_DATA")
        if not base:
            raise DBNetError("no --data-root given and $DBNET_DATA is not set")
        data_root = Path(base) / name
    root = Path(data_root).expanduser()
    if not root.exists():
        raise DBNetError(f"{root}: data root does not exist")
    return root


def load_samples(name: str, data_root: str | Path | None, split: str = "train") -> list[Sample]:
    if split not in ("train", "test"):
        raise DBNetError(f"unknown split {split!r} (train or test)")
    return _loader(name)(resolve_root(name, data_root), split)


def split_holdout(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Deterministic (train, validation) split of ``samples``."""
    if fraction <= 0:
        return samples, []
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = max(1, int(round(len(samples) * fraction)))
    val = set(order[:n_val].tolist())
    return ([s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val])
