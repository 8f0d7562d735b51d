"""The engine's recognition stage (``--text``): the crops the engine cuts (``dbcli.postprocess.crops``)
read by the shipped recogniser (``dbcli.recognition.Recognizer``), each detection given its ``text``
and ``text_score``.

The recogniser is loaded once per model load (``reader_for``: ``dbcli.engine.load.load`` with
``text=True``, or the first image that asks for text, e.g. a ``dbnet serve`` request with
``text=true``) and kept on the ``Model``, on the detector's backend choice: the CUDA provider when the
detector runs on CUDA, else the CPU with the detector's thread count.

Torch-free.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from dbcli.backends.base import Model
from dbcli.postprocess.boxes import Detection


def reader_providers(device: str) -> list[Any]:
    """onnxruntime providers for a detector on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``): CUDA
    (device N) then the CPU when the detector runs on CUDA and onnxruntime has the CUDA provider, else
    the CPU alone."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def reader_for(model: Model) -> Any:
    """``model``'s recogniser (``dbcli.recognition.Recognizer``), loaded on first use with the
    detector's device and thread count and kept on ``model.reader``. Raises ``DBNetError`` naming the
    recogniser file when it is missing or damaged. Not thread-safe on first use: the engine runs one
    image at a time per model."""
    if model.reader is None:
        from dbcli.backends.onnx_backend import default_threads
        from dbcli.recognition import Recognizer

        device = str(model.info.get("device", "cpu"))
        model.reader = Recognizer(threads=default_threads(), providers=reader_providers(device))
    return model.reader


def with_text(detections: list[Detection], crops: list[np.ndarray], reader: Any) -> list[Detection]:
    """``detections`` (one ``(h, w, 3)`` uint8 RGB crop each, same order) with ``text`` and
    ``text_score`` read by ``reader`` (``crops -> list[Reading]``), spaces at the ends stripped; an
    empty or tiny region reads as ``""`` with score 0."""
    readings = reader(crops) if crops else []
    return [replace(det, text=r.text.strip(), text_score=float(r.score)) for det, r in zip(detections, readings)]
