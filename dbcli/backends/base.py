"""The backend protocol and ``Model``, a loaded backend with the defaults stored beside its weights
(made by ``dbcli.backends.loading``).

A backend maps a normalised batch ``(N, 3, H, W)`` float32 (``dbcli.imaging.prepare``'s output,
stacked) to probability maps ``(N, H, W)`` float32 in [0, 1] at the same resolution. Implemented by
``torch_backend.TorchBackend`` (a weights file), ``torch_backend.ModuleBackend`` (a live model, for the
trainer's validation) and ``onnx_backend.OnnxBackend`` (torch-free); any function of that shape works
too (tests use planted ones).

This module must not import torch: ``--backend onnx`` runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """``backend(batch)``: ``(N, 3, H, W)`` float32 -> ``(N, H, W)`` float32 probability maps."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class MapsBackend(Protocol):
    """A backend that also gives the threshold map (torch only: an ONNX export holds P alone)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(prob, thresh)``, each ``(N, H, W)`` float32, for visualisation."""
        ...


@dataclass
class Model:
    """A loaded backend: ``prob_fn`` (and ``maps_fn`` giving (P, T) for visualisation, torch only),
    the ``model`` entry of the output JSON (``info``: weights, backend, device, dtype and the
    architecture), and the defaults stored with the weights."""

    prob_fn: Backend
    info: dict
    postprocess: dict = field(default_factory=dict)
    short_side: int | None = None
    maps_fn: MapsBackend | None = None
    uses_torch: bool = False
    note: str | None = None  # said once before the work starts (e.g. an emulated precision)
    train: dict | None = None  # the weights file's ``train`` entry (its dataset and split), when known
    reader: Any = None  # the text recogniser (``dbcli.engine.text.reader_for``), once text was asked for
    export_seconds: float = 0.0  # spent exporting a .pt to ONNX while loading (counted in the closing line's time)
