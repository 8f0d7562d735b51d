"""The one place that turns (weights, options) into a ready model: ``load(options) -> (Model,
Settings)``, used by ``dbnet detect``, ``visualize``, ``eval`` and ``dbcli.Detector`` (as docTR's
``detection_predictor``). ``load_model`` loads the backend alone (torch or onnxruntime).

This module must not import torch: ``--backend onnx`` runs without it.
"""

from __future__ import annotations

from pathlib import Path

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.inference.backend import Model
from dbcli.inference.options import InferenceOptions
from dbcli.inference.settings import Settings, resolve_settings


def load(options: InferenceOptions = InferenceOptions()) -> tuple[Model, Settings]:
    """The backend ``options`` name (``load_model``) and its engine settings (``resolve_settings``).
    Raises ``DBNetError`` naming the file when the weights cannot be used, or for a setting out of
    range."""
    model = load_model(options.weights, options.backend, options.device, options.precision)
    return model, resolve_settings(model, options)


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
    precision = (precision or defaults.PRECISION).lower()
    if precision != "fp32":
        raise DBNetError(f"--precision {precision} needs the torch backend (the ONNX model runs in fp32)")
    return precision


def _load_onnx(weights: str | Path | None, device: str, precision: str) -> Model:
    onnx_precision(precision)
    from dbcli.inference.onnx_backend import OnnxBackend

    path = weights_path(weights, "onnx")
    if path.suffix.lower() == ".pt":
        raise DBNetError(f"{path}: a PyTorch weights file; export it first "
                         f"(dbnet export --weights {path} --format onnx --out model.onnx)")
    runner = OnnxBackend(path, device)
    info = {"weights": str(path), "backend": "onnx", "device": runner.device, "dtype": "fp32",
            **runner.model_config}
    return Model(runner, info, runner.postprocess, runner.short_side)


def _load_torch(weights: str | Path | None, device: str, precision: str) -> Model:
    from dbcli.inference.torch_backend import TorchBackend
    from dbcli.weights import load_weights

    data = load_weights(weights)
    runner = TorchBackend(data, device, precision)
    info = {"weights": data["path"], "backend": "torch", "device": str(runner.device),
            "dtype": runner.precision, **data["model"]}
    return Model(runner, info, data.get("postprocess") or {}, data.get("short_side"),
                 maps_fn=runner, uses_torch=True, note=runner.note, train=data.get("train"))


def load_model(weights: str | Path | None = None, backend: str | None = None, device: str = defaults.DEVICE,
               precision: str = defaults.PRECISION) -> Model:
    """Load ``weights`` (a ``.pt`` file, a ``.onnx`` export, a shipped short name, or None for the
    default) on ``device`` (auto, cpu, cuda, cuda:N). ``backend`` None: ``onnx`` for a ``.onnx``
    file, else ``torch``. ``precision`` (torch backend): fp32, bf16 or fp16 (see
    ``torch_backend.TorchBackend``). Raises ``DBNetError`` naming the file when it cannot be used."""
    if backend is None:
        backend = "onnx" if weights is not None and Path(weights).suffix.lower() == ".onnx" else "torch"
    backend = backend.lower()
    if backend == "onnx":
        return _load_onnx(weights, device, precision)
    if backend == "torch":
        return _load_torch(weights, device, precision or defaults.PRECISION)
    raise DBNetError(f"unknown backend {backend!r} (torch or onnx)")
