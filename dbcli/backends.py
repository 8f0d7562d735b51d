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


BACKENDS = ("auto", "torch", "onnx")


def default_weights(backend: str) -> Path:
    """The default weights file (``general``, or ``$DBNET_WEIGHTS``): a ``.pt``; with
    ``backend == "onnx"`` a ``.onnx`` beside it when one is there."""
    from dbcli.weights import default_weights_path  # torch-free at import

    path = default_weights_path()
    if backend == "onnx" and path.with_suffix(".onnx").exists():
        return path.with_suffix(".onnx")
    return path


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


def onnxruntime_available() -> bool:
    """Whether onnxruntime imports (installed and loadable)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    """Whether torch sees a CUDA (or ROCm) device. torch is imported only where a GPU driver's device
    node exists, so that a CPU-only machine picks its backend without importing torch."""
    if not any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pick_backend(backend: str | None, path: Path, device: str = "auto", precision: str = "fp32",
                 maps: bool = False) -> str:
    """``torch`` or ``onnx`` for ``--backend`` (``auto`` or None: the fastest that can do the job):
    a ``.onnx`` file runs on onnxruntime; a ``.pt`` file on torch where only torch can run it
    (``precision`` bf16/fp16, ``maps`` (the threshold map), a CUDA ``device``) or where onnxruntime is
    not installed, else on onnxruntime (its export cached, ``dbcli.onnx_cache``): on a CPU it is as
    fast as torch when the cores are free and stays fast when they are shared (bench/README.md)."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise DBNetError(f"unknown backend {backend!r} (auto, torch or onnx)")
    if backend != "auto":
        return backend
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if maps or (precision or "fp32").lower() != "fp32" or not onnxruntime_available():
        return "torch"
    if device.startswith("cuda") or (device == "auto" and cuda_available()):
        return "torch"
    return "onnx"


def _onnx_model(runner, weights: Path, note: str | None = None) -> Model:
    info = {"weights": str(weights), "backend": "onnx", "device": runner.device, "dtype": "fp32",
            **runner.model_config}
    return Model(runner, info, runner.postprocess, runner.short_side, note=note, train=runner.train)


def load_model(weights: str | Path | None = None, backend: str | None = "auto", device: str = "auto",
               precision: str = "fp32", maps: bool = False) -> Model:
    """Load ``weights`` (a ``.pt`` file, a ``.onnx`` export, a shipped short name, or None for the
    default) on ``device`` (auto, cpu, cuda, cuda:N). ``backend``: ``auto`` (or None; see
    ``pick_backend``), ``torch`` or ``onnx`` (a ``.pt`` file is exported once and cached,
    ``dbcli.onnx_cache``). ``precision`` (torch backend): fp32, bf16 or fp16 (see
    ``inference.TorchBackend``). ``maps``: the threshold map is wanted too (torch). Raises
    ``DBNetError`` naming the file when it cannot be used."""
    auto = (backend or "auto").lower() == "auto"
    path = weights_path(weights, "auto" if auto else (backend or "auto").lower())
    backend = pick_backend(backend, path, device, precision, maps)
    note = None
    if backend == "onnx":
        onnx_precision(precision)
        if path.suffix.lower() == ".onnx":
            from dbcli.onnx_backend import OnnxBackend

            return _onnx_model(OnnxBackend(path, device), path)
        if not path.exists():
            from dbcli.weights import load_weights

            load_weights(path)  # the torch loader's one-line error for a missing file
        from dbcli.onnx_cache import cached_onnx_backend

        try:
            return _onnx_model(cached_onnx_backend(path, device), path)
        except DBNetError as exc:
            if not auto:
                raise
            note = f"using the torch backend: no ONNX model of {path} ({exc})"
            backend = "torch"  # (a file torch cannot read either gets the torch loader's error)
    if backend == "torch":
        from dbcli.inference import TorchBackend
        from dbcli.weights import load_weights

        data = load_weights(path)
        torch_runner = TorchBackend(data, device, precision or "fp32")
        info = {"weights": data["path"], "backend": "torch", "device": str(torch_runner.device),
                "dtype": torch_runner.precision, **data["model"]}
        return Model(torch_runner, info, data.get("postprocess") or {}, data.get("short_side"),
                     maps_fn=torch_runner, uses_torch=True, note=torch_runner.note or note,
                     train=data.get("train"))
    raise DBNetError(f"unknown backend {backend!r} (auto, torch or onnx)")
