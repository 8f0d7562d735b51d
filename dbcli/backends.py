"""The backend protocol and the one place where backends are loaded (torch or onnxruntime).

A backend maps a normalised batch ``(N, 3, H, W)`` float32 (``dbcli.imaging.prepare``'s output,
stacked) to probability maps ``(N, H, W)`` float32 in [0, 1] at the same resolution. Implemented by
``dbcli.inference.TorchBackend`` (a weights file), ``dbcli.inference.ModuleBackend`` (a live model,
for the trainer's validation) and ``dbcli.onnx_backend.OnnxBackend`` (torch-free); any function of
that shape works too (tests use planted ones).

This module must not import torch: ``--backend onnx`` runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dbcli.errors import DBNetError


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


LoadedModel = Model  # the name the public API documents


def default_weights(backend: str) -> Path:
    from dbcli.weights import default_weights_path  # torch-free at import

    path = default_weights_path()
    return path.with_suffix(".onnx") if backend == "onnx" else path


def weights_path(weights: str | Path | None, backend: str) -> Path:
    """The file behind ``--weights`` (a path or a shipped short name) for ``backend``."""
    from dbcli.weights import resolve_weights

    return Path(resolve_weights(weights)) if weights is not None else default_weights(backend)


def onnx_precision(precision: str | None) -> str:
    """The ONNX backend runs in fp32 only: ``"fp32"``, or ``DBNetError`` for any other ``--precision``."""
    precision = (precision or "fp32").lower()
    if precision != "fp32":
        raise DBNetError(f"--precision {precision} needs the torch backend (the ONNX model runs in fp32)")
    return precision


def load_model(weights: str | Path | None = None, backend: str | None = None, device: str = "auto",
               precision: str = "fp32") -> Model:
    """Load ``weights`` (a ``.pt`` file, a ``.onnx`` export, a shipped short name, or None for the
    default) on ``device`` (auto, cpu, cuda, cuda:N). ``backend`` None: ``onnx`` for a ``.onnx``
    file, else ``torch``. ``precision`` (torch backend): fp32, bf16 or fp16 (see
    ``inference.TorchBackend``). Raises ``DBNetError`` naming the file when it cannot be used."""
    if backend is None:
        backend = "onnx" if weights is not None and Path(weights).suffix.lower() == ".onnx" else "torch"
    backend = backend.lower()
    if backend == "onnx":
        onnx_precision(precision)
        from dbcli.onnx_backend import OnnxBackend

        path = weights_path(weights, backend)
        if path.suffix.lower() == ".pt":
            raise DBNetError(f"{path}: a PyTorch weights file; export it first "
                             f"(dbnet export --weights {path} --format onnx --out model.onnx)")
        runner = OnnxBackend(path, device)
        info = {"weights": str(path), "backend": "onnx", "device": runner.device, "dtype": "fp32",
                **runner.model_config}
        return Model(runner, info, runner.postprocess, runner.short_side)
    if backend == "torch":
        from dbcli.inference import TorchBackend
        from dbcli.weights import load_weights

        data = load_weights(weights)
        torch_runner = TorchBackend(data, device, precision or "fp32")
        info = {"weights": data["path"], "backend": "torch", "device": str(torch_runner.device),
                "dtype": torch_runner.precision, **data["model"]}
        return Model(torch_runner, info, data.get("postprocess") or {}, data.get("short_side"),
                     maps_fn=torch_runner, uses_torch=True, note=torch_runner.note, train=data.get("train"))
    raise DBNetError(f"unknown backend {backend!r} (torch or onnx)")
