"""``Settings``: everything that decides the detections besides the model, resolved from
``InferenceOptions`` and the weights file's stored values (``resolve_settings``).

Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.imaging import check_sides
from dbcli.inference.backend import Model
from dbcli.inference.options import InferenceOptions
from dbcli.postprocess.boxes import PostConfig, post_config_from
from dbcli.postprocess.reading_order import SORT_MODES


@dataclass(frozen=True)
class Settings:
    """The network input size (shorter side ``short_side`` pixels, longer side capped at ``max_side``;
    None: ``defaults.MAX_SIDE``), post-processing, batch size, EXIF handling, the decompression-bomb
    limit (million pixels; None: no limit), the order of each image's detections (``sort``:
    ``dbcli.postprocess.reading_order.SORT_MODES``) and the scale policy: ``fixed`` (every image at
    ``short_side``) or ``auto`` (a first pass at ``short_side``, then a larger scale where the text is
    small: ``dbcli.inference.scale_policy``)."""

    short_side: int = defaults.SHORT_SIDE
    max_side: int | None = None
    post: PostConfig = PostConfig()
    batch_size: int = 1
    exif: bool = True
    max_megapixels: float | None = defaults.MAX_MEGAPIXELS  # larger images are refused (bombs)
    sort: str = defaults.SORT
    scale_policy: str = "fixed"

    def to_dict(self) -> dict:
        """The ``settings`` entry of ``dbnet detect``'s JSON."""
        return {"short_side": self.short_side, "max_side": self.max_side, **asdict(self.post),
                "exif": self.exif, "batch_size": self.batch_size, "sort": self.sort,
                "scale_policy": self.scale_policy}


def _check_post(config: PostConfig) -> None:
    for name, value in (("thresh", config.thresh), ("box-thresh", config.box_thresh)):
        if not 0.0 <= value <= 1.0:
            raise DBNetError(f"--{name} must lie in [0, 1], got {value}")
    if config.unclip_ratio <= 0:
        raise DBNetError(f"--unclip-ratio must be positive, got {config.unclip_ratio}")
    if config.max_candidates < 1:
        raise DBNetError(f"--max-candidates must be at least 1, got {config.max_candidates}")


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
    else ``dbcli.defaults``. Raises ``DBNetError`` for a value out of range."""
    o = options
    config = post_config_from(model.postprocess, thresh=o.thresh, box_thresh=o.box_thresh,
                              unclip_ratio=o.unclip_ratio, polygon=o.polygon, max_candidates=o.max_candidates)
    side = o.short_side if o.short_side is not None else (model.short_side or defaults.SHORT_SIDE)
    _check_post(config)
    check_sides(side, o.max_side)
    if o.max_megapixels is not None and not o.max_megapixels > 0:
        raise DBNetError(f"--max-megapixels must be positive, got {o.max_megapixels}")
    batch_size = _batch_size(model, o.batch_size)
    if o.sort not in SORT_MODES:
        raise DBNetError(f"unknown --sort {o.sort!r} ({', '.join(SORT_MODES)})")
    policy = "fixed" if o.short_side is not None else "auto"  # --short-side N: a fixed scale
    return Settings(int(side), o.max_side, config, batch_size, bool(o.exif), o.max_megapixels, o.sort, policy)


def decode_settings(options: InferenceOptions) -> Settings:
    """Settings for decoding alone (no model: ``dbnet visualize --pred``): batch size, EXIF handling
    and the decompression-bomb limit of ``options``."""
    return Settings(batch_size=options.batch_size or 1, exif=options.exif, max_megapixels=options.max_megapixels)
