"""``InferenceOptions``: the options of every command that runs the network (``dbnet detect``,
``visualize``, ``eval``) and of the ``Detector`` API, declared once.

Each field carries its command-line declaration in its metadata (``dbcli.optionspec.option``, no CLI
framework imported): ``dbcli.commands.common.options_from`` turns the fields into the options of a
command. ``None`` means "the weights file's value, else the default in ``dbcli.defaults``"; the
values are resolved, checked and turned into engine ``Settings`` by ``dbcli.engine.settings``.

Torch-free and light on import (``--help`` reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dbcli import defaults
from dbcli.optionspec import option
from dbcli.weights import SHIPPED

__all__ = ["InferenceOptions"]


def _shipped_help() -> str:
    return "; ".join(f"{w.name}: {w.use}" for w in SHIPPED)


@dataclass(frozen=True)
class InferenceOptions:
    """How to load the model and run it. Every field is also a keyword of ``dbcli.Detector``.

    Args:
        weights: a shipped name, a dbnet ``.pt`` file or a ``.onnx`` export (None: ``general``).
        backend: ``"auto"`` (onnxruntime on a CPU when installed, a ``.pt`` file exported once and
            cached; torch on CUDA, for bf16/fp16, or without onnxruntime), ``"torch"`` or ``"onnx"``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (torch backend).
        short_side: a fixed test scale: the network input's shorter side in pixels. None: the scale
            policy (``dbcli.engine.scale_policy``): a first pass at the weights' short side, else
            736, then a larger scale, in tiles, where the text is small.
        max_side: cap on the network input's longer side in pixels (None: 4096).
        thresh, box_thresh, unclip_ratio, polygon, max_candidates: post-processing (None: the values
            stored with the weights, else ``PostConfig``'s).
        batch_size: images per forward pass (None: 8 on CUDA, 1 on a CPU); results do not depend on it.
        exif: apply files' EXIF orientation (what a viewer shows).
        max_megapixels: images of more million pixels are refused before decoding; None: no limit.
        sort: the order of each image's detections: ``lines``, ``columns`` or ``none``.
        text: also read the text in each region (``dbcli.engine.text``): each detection gets ``text``
            and ``text_score``.
    """

    weights: Optional[str] = option(
        None, flags=("--weights", "-w"), show_default=False,
        help="Weights: a shipped name, a dbnet .pt file, or a .onnx from `dbnet export` (default: general; "
             f"dbnet eval --dataset icdar15: icdar15). Shipped: {_shipped_help()}.")
    backend: str = option(
        defaults.BACKEND,
        help="auto, torch or onnx (onnxruntime; a .pt file is exported once and cached). auto: onnx for a "
             ".onnx file; torch on CUDA, for --precision bf16/fp16 and --maps, or without onnxruntime; "
             "else onnx (fastest on a CPU, also when other programs share the cores).")
    device: str = option(
        defaults.DEVICE,
        help="auto (CUDA when present), cpu, cuda or cuda:N.")
    precision: str = option(
        defaults.PRECISION, flags=("--precision", "--dtype"),
        help="Network arithmetic (torch backend): fp32; bf16, about 2x faster on CPUs with AVX512-BF16/AMX "
             "and on GPUs; fp16 (CUDA). Probabilities move by ~1e-3, so a region right at a threshold may "
             "come and go.")
    short_side: Optional[int] = option(
        None, show_default=False,
        help="A fixed test scale: the shorter side is resized to this (rounded to a multiple of 32). "
             "Default: the scale policy: a first pass at the weights file's short side (else "
             f"{defaults.SHORT_SIDE}), then, where it finds small text on a large image, a re-run at the "
             "scale that makes the text ~20 px tall (at most native resolution), in tiles.")
    max_side: Optional[int] = option(
        None, show_default=False,
        help=f"Cap on the network input's longer side in pixels (default {defaults.MAX_SIDE}, with a note "
             "when it shrinks an image; at most 16384): bounds the memory of panoramas and long "
             "receipts.")
    thresh: Optional[float] = option(
        None, show_default=False,
        help="Binarization threshold of the probability map (default: the weights file's, else "
             f"{defaults.THRESH}).")
    box_thresh: Optional[float] = option(
        None, show_default=False,
        help=f"Drop regions whose mean probability is below this (default: the weights file's, else "
             f"{defaults.BOX_THRESH}). Lower it to find more text, raise it for fewer false alarms; "
             "dbnet eval --pred: drops lower-scored predictions.")
    unclip_ratio: Optional[float] = option(
        None, show_default=False,
        help="How far each region is expanded (D = area x ratio / perimeter; default: the weights file's, "
             f"else {defaults.UNCLIP_RATIO}). Raise it if boxes cut letters, lower it if nearby lines "
             "merge.")
    polygon: Optional[bool] = option(
        None, flags=("--polygon/--box",), show_default=False,
        help="Polygons for curved text, or 4-point rotated boxes (default: the weights file's, else boxes; "
             "dbnet eval: polygons on totaltext and ctw1500).")
    max_candidates: Optional[int] = option(
        None, min=1, show_default=False,
        help=f"Most candidate regions post-processed per image (default {defaults.MAX_CANDIDATES}; the "
             "rest are dropped with a warning).")
    batch_size: Optional[int] = option(
        None, flags=("--batch-size", "-b"), min=1, show_default=False,
        help="Images per forward pass (images of the same input size are batched). Default: "
             f"{defaults.CUDA_BATCH_SIZE} on CUDA, 1 on a CPU (larger batches are no faster there and "
             "hold more memory).")
    exif: bool = option(
        True,
        help="--no-exif ignores EXIF orientation: work in stored pixels (for datasets such as MSRA-TD500 "
             "whose boxes are in stored-pixel coordinates).")
    max_megapixels: Optional[float] = option(
        defaults.MAX_MEGAPIXELS,
        help="Refuse (warn and skip) images of more million pixels than this before decoding them: a "
             "small file can hold a huge image (decompression bomb).")
    sort: str = option(
        defaults.SORT,
        help="Order of each image's detections (and crop numbers): lines (text lines top to bottom, left "
             "to right within a line, tolerant to tilt), columns (multi-column documents: each column top "
             "to bottom, columns left to right) or none (the post-processing's order).")
    text: bool = option(
        False, flags=("--text",),
        help="Also read the text in each region (the shipped PP-OCRv6 small recogniser, with a text "
             "direction classifier): each detection gets \"text\" and \"text_score\"; --format icdar "
             "lines end with the text.")
