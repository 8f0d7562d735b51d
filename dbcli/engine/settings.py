"""``Settings``: everything that decides the detections besides the model, resolved from
``InferenceOptions`` and the weights file's stored values (``resolve_settings``).

Torch-free.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError
from dbcli.imaging import MAX_MAX_SIDE, MAX_SHORT_SIDE
from dbcli.postprocess.boxes import PostConfig, post_config_from
from dbcli.postprocess.reading_order import SORT_MODES


@dataclass(frozen=True)
class Settings:
    """The network input size (shorter side ``short_side`` pixels, longer side capped at ``max_side``;
    None: ``defaults.MAX_SIDE``), post-processing, batch size, EXIF handling, the decompression-bomb
    limit (million pixels; None: no limit), the order of each image's detections (``sort``:
    ``dbcli.postprocess.reading_order.SORT_MODES``) and the scale policy: ``fixed`` (every image at
    ``short_side``) or ``auto`` (a first pass at ``short_side``, then a larger scale where the text is
    small: ``dbcli.engine.scale_policy``)."""

    short_side: int = defaults.SHORT_SIDE
    max_side: int | None = None
    post: PostConfig = PostConfig()
    batch_size: int = 1
    exif: bool = True
    max_megapixels: float | None = defaults.MAX_MEGAPIXELS  # larger images are refused (bombs)
    sort: str = defaults.SORT
    scale_policy: str = "fixed"
    text: bool = False  # read the text in each region (dbcli.engine.text)

    def to_dict(self) -> dict:
        """The ``settings`` entry of ``dbnet detect``'s JSON (``text`` only when it is read)."""
        entry = {"short_side": self.short_side, "max_side": self.max_side, **asdict(self.post),
                 "exif": self.exif, "batch_size": self.batch_size, "sort": self.sort,
                 "scale_policy": self.scale_policy}
        return {**entry, "text": True} if self.text else entry


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# The largest --unclip-ratio: a box grows by ratio * area / perimeter on every side, ~ratio/2 times its
# height for a text line (1.5: 2.5x as tall); at 10 a box is 11x the line's height, past any use, and far
# larger ratios overflow the polygon offsetting (1e300 gave 0 regions without a word).
MAX_UNCLIP_RATIO = 10.0

# (field, low, high, low included): the range of each numeric option of InferenceOptions
_RANGES = (("thresh", 0.0, 1.0, True), ("box_thresh", 0.0, 1.0, True),
           ("unclip_ratio", 0.0, MAX_UNCLIP_RATIO, False),
           ("max_candidates", 1, None, True), ("batch_size", 1, None, True),
           ("short_side", 32, MAX_SHORT_SIDE, True), ("max_side", 32, MAX_MAX_SIDE, True),
           ("max_megapixels", 0.0, None, False))


def _range_text(low: float, high: float | None, closed: bool) -> str:
    if high is not None:
        return f"must lie in {'[' if closed else '('}{low:g}, {high:g}]"
    return f"must be at least {low:g}" if closed else "must be positive"


# Options of a type the CLI guarantees but the API does not: ``exif="false"`` is a truthy string.
_BOOLEANS = ("exif", "polygon")  # (polygon: None too)
_STRINGS = ("backend", "device", "precision", "sort")


def check_types(options: InferenceOptions) -> None:
    """Refuse a boolean option that is not ``True`` / ``False`` (``"false"`` is a truthy string) and a
    text option that is not text; raises ``DBNetError`` naming the option."""
    for name in _BOOLEANS:
        value = getattr(options, name)
        if not (isinstance(value, bool) or (value is None and name == "polygon")):
            raise DBNetError(f"{_flag(name)} must be True or False, got {value!r}")
    for name in _STRINGS:
        value = getattr(options, name)
        if not isinstance(value, str):
            raise DBNetError(f"{_flag(name)} must be text, got {value!r}")
    if options.weights is not None and not isinstance(options.weights, str | os.PathLike):
        raise DBNetError(f"--weights must be a path or a shipped name, got {options.weights!r}")


def check_options(options: InferenceOptions) -> None:
    """Refuse any option the user gave of the wrong type (``check_types``) or any numeric one that is not
    a finite number in its range (``nan`` and ``inf`` pass comparisons unnoticed and would give 0
    detections with exit 0), before any work. ``None`` (not given) is not checked. Raises ``DBNetError``
    naming the option."""
    check_types(options)
    for name, low, high, closed in _RANGES:
        value = getattr(options, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DBNetError(f"{_flag(name)} must be a finite number, got {value!r}")
        if value < low or (high is not None and value > high) or (not closed and value <= low):
            raise DBNetError(f"{_flag(name)} {_range_text(low, high, closed)}, got {value:g}")


def _check_stored(model: Model, config: PostConfig, side: int) -> None:
    """The values that came from the weights file (``check_options`` checked the rest) are blamed on it."""
    where = model.info.get("weights", "the weights file")
    stored = {"thresh": config.thresh, "box_thresh": config.box_thresh, "unclip_ratio": config.unclip_ratio,
              "max_candidates": config.max_candidates, "short_side": side}
    for name, low, high, closed in _RANGES:
        value = stored.get(name)
        if value is None:
            continue
        bad = (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
               or value < low or (high is not None and value > high) or (not closed and value <= low))
        if bad:
            raise DBNetError(f"{where}: its stored {name} {value!r} is out of range ({name} "
                             f"{_range_text(low, high, closed)}); pass {_flag(name)} to override it")


def _batch_size(model: Model, given: int | None) -> int:
    """``given``, else ``defaults.CUDA_BATCH_SIZE`` on CUDA and 1 elsewhere (on a CPU a larger batch
    only adds memory traffic: batch 4 is ~20% slower per image)."""
    if given is None:
        return defaults.CUDA_BATCH_SIZE if str(model.info.get("device", "")).startswith("cuda") else 1
    if given < 1:
        raise DBNetError(f"--batch-size must be at least 1, got {given}")
    return int(given)


def resolve_settings(model: Model, options: InferenceOptions = InferenceOptions()) -> Settings:
    """The engine settings for ``model``: options given win; else the weights file's stored values;
    else ``dbcli.defaults``. Raises ``DBNetError`` for a value out of range, naming the option when
    the user gave it (``check_options``), else the weights file it came from."""
    o = options
    check_options(o)
    config = post_config_from(model.postprocess, thresh=o.thresh, box_thresh=o.box_thresh,
                              unclip_ratio=o.unclip_ratio, polygon=o.polygon, max_candidates=o.max_candidates)
    side = o.short_side if o.short_side is not None else (model.short_side or defaults.SHORT_SIDE)
    _check_stored(model, config, side)
    batch_size = _batch_size(model, o.batch_size)
    if o.sort not in SORT_MODES:
        raise DBNetError(f"unknown --sort {o.sort!r} ({', '.join(SORT_MODES)})")
    policy = "fixed" if o.short_side is not None else "auto"  # --short-side N: a fixed scale
    return Settings(int(side), o.max_side, config, batch_size, bool(o.exif), o.max_megapixels, o.sort, policy,
                    bool(o.text))


def decode_settings(options: InferenceOptions) -> Settings:
    """Settings for decoding alone (no model: ``dbnet visualize --pred``): batch size, EXIF handling
    and the decompression-bomb limit of ``options``."""
    check_options(options)
    return Settings(batch_size=options.batch_size or 1, exif=options.exif, max_megapixels=options.max_megapixels)
