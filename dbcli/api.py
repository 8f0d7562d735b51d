"""The Python API: ``Detector``, DBNet text detection from your own code.

    from dbcli import Detector

    detector = Detector()                      # the shipped "general" weights, loaded once
    result = detector("examples/street_sign.jpg", crops=True)
    for det, crop in zip(result.detections, result.crops):   # in reading order
        print(det.points.round(1).tolist(), det.score, crop.shape)
    pages = detector.pdf("report.pdf")          # one result per page (pip install 'dbnet-cli[pdf]')
    reader = Detector(text=True)                # also read the text: det.text, det.text_score
    print([det.text for det in reader("examples/street_sign.jpg").detections])

It loads its model where every command does (``dbcli.engine.load.load``) and runs the engine of
``dbnet detect`` (``dbcli.engine.pipeline.run_pipeline``), so a file gives the same detections as
``dbnet detect`` with the same options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.engine.load import load
from dbcli.engine.options import InferenceOptions
from dbcli.engine.pdf import is_pdf, pdf_pages
from dbcli.engine.pipeline import run_pipeline
from dbcli.engine.records import Failure
from dbcli.engine.result import ImageResult
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError

__all__ = ["Detector", "ImageResult"]

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

# One image: a file path, an (H, W, 3) uint8 RGB numpy array, or a PIL image.
ImageInput = Union[str, "os.PathLike[str]", np.ndarray, "PILImage"]


class Detector:
    """A DBNet text detector: the model is loaded once, each call runs the ``dbnet detect`` engine.

    Args:
        weights: a ``.pt`` weights file, a ``.onnx`` export (onnxruntime, torch never imported), a
            shipped short name (``"general"``, ...) or None for the default (``general``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        **options: the other fields of ``dbcli.engine.options.InferenceOptions`` (the options of
            ``dbnet detect``):
        backend: ``"auto"`` (default, as ``dbnet detect``: onnxruntime on a CPU when installed, a
            ``.pt`` file exported once and cached; torch on CUDA, for bf16/fp16, or without
            onnxruntime), ``"torch"`` or ``"onnx"``.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (torch backend only).
        short_side: a fixed scale: the network input's shorter side in pixels. Default (None): the
            scale policy (a first pass at the weights' own short side, else 736, then a larger scale,
            in tiles, where the text is small; each result's ``scale`` says what was used).
        max_side: cap on the network input's longer side in pixels (None: 4096).
        thresh, box_thresh, unclip_ratio, polygon, max_candidates: post-processing (default: the
            values stored with the weights); ``polygon`` True gives polygons for curved text.
        batch_size: images per network call (None: 8 on CUDA, 1 on a CPU); results do not depend on it.
        exif: apply files' EXIF orientation (what a viewer shows).
        max_megapixels: files of more pixels are refused (decompression bombs); None: no limit.
        sort: the order of each image's detections: ``"lines"`` (reading order by text lines, the
            default), ``"columns"`` (multi-column documents) or ``"none"`` (``dbcli.postprocess.reading_order``).
        text: also read the text of each region (the shipped recogniser, loaded once with the model on
            the detector's device): each detection's ``.text`` and ``.text_score`` (else None), the
            strings of ``dbnet detect --text``.

    Raises ``DBNetError`` when the weights cannot be loaded or a setting is out of range, ``TypeError``
    for a keyword that is not an option.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, device: str = defaults.DEVICE,
                 **options: Any):
        self.options = InferenceOptions(weights=str(weights) if weights is not None else None, device=device,
                                        **options)
        loaded: tuple[Model, Settings] = load(self.options)
        self.model, self.settings = loaded

    @property
    def info(self) -> dict:
        """The ``model`` entry of ``dbnet detect``'s JSON (weights, backend, device, dtype, architecture)."""
        return self.model.info

    @overload
    def __call__(self, images: list[ImageInput] | tuple[ImageInput, ...], *, crops: bool = False
                 ) -> list[ImageResult]: ...

    @overload
    def __call__(self, images: ImageInput, *, crops: bool = False) -> ImageResult: ...

    def __call__(self, images: Any, *, crops: bool = False) -> ImageResult | list[ImageResult]:
        """Detect text in one image or a list of them.

        Args:
            images: a file path, an ``(H, W, 3)`` uint8 RGB numpy array, a PIL image, or a list or
                tuple of these.
            crops: also cut each detected region out: ``.crops`` holds one upright ``(h, w, 3)``
                uint8 RGB array per detection, in the same order (tilted text straightened,
                vertical text turned to read left to right; ``dbcli.postprocess.crops``).

        Returns:
            For one image an ``ImageResult``, for a list a list of them in the same order:
            ``.detections`` (each with ``.points``, an ``(n, 2)`` float64 array of ``[x, y]`` in the
            original image's pixels, clockwise from the top-left corner for boxes, and ``.score``,
            the region's mean text probability in [0, 1]; with ``text=True`` also ``.text``, the
            string read, and ``.text_score``, the recogniser's confidence in [0, 1]), ``.width`` and
            ``.height`` in pixels,
            ``.notes`` (lines for the user: a first frame used, a size cap) and ``.capped`` (the
            probability map had more than ``max_candidates`` candidate regions). Detections are in
            the ``sort`` order.

        Raises:
            DBNetError: an input cannot be read or decoded (the message names it).
        """
        if not isinstance(crops, bool):
            raise DBNetError(f"crops must be True or False, got {crops!r}")
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        for source in sources:
            if isinstance(source, (str, os.PathLike)) and not str(os.fspath(source)).strip():
                raise DBNetError("an empty path ('') names no image: give a file path, an (H, W, 3) uint8 RGB "
                                 "numpy array or a PIL image")
            if isinstance(source, (str, os.PathLike)) and is_pdf(source):
                raise DBNetError(f"{source}: a PDF holds pages: detector.pdf({str(source)!r}) gives one result "
                                 "per page")
        results = self._run(sources, crops)
        return results[0] if single else results

    def pdf(self, path: str | os.PathLike[str], *, dpi: float = defaults.DPI, crops: bool = False
            ) -> list[ImageResult]:
        """Detect text on every page of a PDF (needs ``pip install 'dbnet-cli[pdf]'``): one result per
        page, in page order, named ``<path>#page=N``, with points in the pixels of the page rendered
        at ``dpi`` and ``.page`` (page number, size in points, dpi) to map them back to the PDF
        (``x_pt = x * 72 / dpi``, ``y_pt = page.height_pt - y * 72 / dpi``). ``crops`` as for a call.
        Raises ``DBNetError`` for an encrypted, damaged or empty PDF, or a page that fails."""
        if not isinstance(crops, bool):
            raise DBNetError(f"crops must be True or False, got {crops!r}")
        return self._run(list(pdf_pages(Path(path), dpi)), crops)

    def _run(self, sources: list, crops: bool) -> list[ImageResult]:
        results: list[ImageResult] = []
        for item in run_pipeline(sources, self.model, self.settings, with_crops=crops):
            if isinstance(item, Failure):
                raise DBNetError(item.message)
            results.append(ImageResult.from_record(item))
        return results

    def __reduce__(self) -> tuple[Any, tuple[dict]]:
        """Pickling (``multiprocessing`` with spawn, ``concurrent.futures``, ``joblib``) sends the
        options, not the model: the receiving process loads the same weights with the same options
        (a few hundred ms; a ``.pt`` file's cached ONNX export is reused)."""
        from dataclasses import asdict

        return _detector_from_options, (asdict(self.options),)

    def __repr__(self) -> str:
        info = self.model.info
        return (f"Detector(weights={info.get('weights')!r}, backend={info.get('backend')!r}, "
                f"device={info.get('device')!r})")


def _detector_from_options(options: dict) -> Detector:
    """A ``Detector`` loaded anew from the ``InferenceOptions`` fields of a pickled one."""
    options = dict(options)
    return Detector(options.pop("weights"), options.pop("device"), **options)
