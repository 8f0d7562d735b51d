"""A request's options (query parameters or multipart form fields) -> the engine's ``Settings``.

Names are those of ``dbnet detect``'s options, with ``_`` or ``-`` (``box_thresh`` or
``box-thresh``). The weights, the batch size and the megapixel limit are the server's; a request may
ask for a smaller network input cap (``max_side``) or fewer candidates, not more than the server's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import Settings, resolve_settings
from dbcli.errors import DBNetError
from dbcli.serve.config import MAX_DPI, MIN_DPI, ServeConfig

TRUE = {"1", "true", "yes", "on", "polygon", "base64"}
FALSE = {"0", "false", "no", "off", "box", "none", ""}


class OptionError(DBNetError):
    """A request option that is unknown or out of range (answered with a 400)."""


def _bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise OptionError(f"{name}: expected true or false, got {value!r}")


def _number(kind: Callable[[str], Any]) -> Callable[[str, str], Any]:
    def parse(name: str, value: str) -> Any:
        try:
            return kind(value.strip())
        except ValueError:
            raise OptionError(f"{name}: expected {'an integer' if kind is int else 'a number'}, "
                              f"got {value!r}") from None
    return parse


def _text(name: str, value: str) -> str:
    return value.strip()


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "thresh": _number(float), "box_thresh": _number(float), "unclip_ratio": _number(float),
    "polygon": _bool, "sort": _text, "short_side": _number(int), "max_side": _number(int),
    "max_candidates": _number(int), "dpi": _number(float), "exif": _bool, "crops": _bool, "images": _bool,
    "text": _bool,
}


@dataclass(frozen=True)
class RequestOptions:
    """What one request asked for: the engine ``settings``, the PDF rendering ``dpi`` (pixels per
    inch), ``crops`` (each detection's crop as a base64 PNG data URL in ``"crop"``) and ``images``
    (each image or page itself as a JPEG data URL in ``"image"``, for the page to draw on)."""

    settings: Settings
    dpi: float
    crops: bool = False
    images: bool = False


def parse_options(values: Mapping[str, str], model: Model, config: ServeConfig, base_options: InferenceOptions,
                  base: Settings) -> RequestOptions:
    """``values`` (name -> text) over the server's defaults (``base_options``, resolved as ``base``).
    Raises ``OptionError`` naming the option for an unknown name, a malformed value or one out of
    range."""
    given: dict[str, Any] = {}
    for raw, value in values.items():
        name = raw.strip().lower().replace("-", "_")
        if name not in PARSERS:
            raise OptionError(f"unknown option {raw!r} (options: {', '.join(PARSERS)})")
        given[name] = PARSERS[name](name, value)
    cap = base.max_side or defaults.MAX_SIDE
    if given.get("max_side") is not None and given["max_side"] > cap:
        raise OptionError(f"max_side: at most {cap} pixels on this server, got {given['max_side']}")
    most = base.post.max_candidates
    if given.get("max_candidates") is not None and given["max_candidates"] > most:
        raise OptionError(f"max_candidates: at most {most} on this server, got {given['max_candidates']}")
    dpi = given.pop("dpi", config.dpi)
    if not MIN_DPI <= dpi <= MAX_DPI:  # below: pages of a few pixels, nothing to find
        raise OptionError(f"dpi: must lie in [{MIN_DPI}, {MAX_DPI}], got {dpi:g}")
    crops, images = given.pop("crops", False), given.pop("images", False)
    if not given:
        return RequestOptions(base, dpi, crops, images)
    try:
        settings = resolve_settings(model, replace(base_options, **given))
    except DBNetError as exc:
        raise OptionError(str(exc)) from None
    return RequestOptions(settings, dpi, crops, images)
