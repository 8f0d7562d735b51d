"""The one place that opens a weights file for inference: ``load_model`` loads the backend (torch or
onnxruntime) with the defaults stored beside the weights, and ``pick_backend`` says which one
``--backend auto`` means. ``dbcli.engine.load.load`` adds the engine settings (as docTR's
``detection_predictor``).

This module must not import torch: ``--backend onnx`` runs without it.
"""

from __future__ import annotations

from pathlib import Path

from dbcli import defaults
from dbcli.backends.base import Model
from dbcli.errors import DBNetError
from dbcli.extras import require_torch, torch_available
from dbcli.files import check_regular_file

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
    precision = (precision or defaults.PRECISION).lower()
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


def pick_backend(backend: str | None, path: Path, device: str = defaults.DEVICE,
                 precision: str = defaults.PRECISION, maps: bool = False) -> str:
    """``torch`` or ``onnx`` for ``--backend`` (``auto`` or None: the fastest that can do the job):
    a ``.onnx`` file runs on onnxruntime; a ``.pt`` file on torch where only torch can run it
    (``precision`` bf16/fp16, ``maps`` (the threshold map), a CUDA ``device``) or where onnxruntime is
    not installed, else on onnxruntime (its export cached, ``dbcli.backends.onnx_cache``): on a CPU
    it is as fast as torch when the cores are free and stays fast when they are shared
    (bench/README.md, "Shared CPUs")."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise DBNetError(f"unknown backend {backend!r} (auto, torch or onnx)")
    if backend != "auto":
        return backend
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if maps or (precision or defaults.PRECISION).lower() != "fp32" or not onnxruntime_available():
        return "torch"
    if (device.startswith("cuda") and torch_available()) or (device == "auto" and cuda_available()):
        return "torch"  # (without torch, onnxruntime's CUDA provider serves --device cuda where installed)
    return "onnx"


def torch_need(backend: str | None, path: Path, precision: str, maps: bool) -> str:
    """What asks for the torch backend, for the one-line error when torch is not installed."""
    if (backend or "auto").lower() == "torch":
        return "--backend torch"
    if (precision or defaults.PRECISION).lower() != "fp32":
        return f"--precision {precision}"
    if maps:
        return "the threshold map (--maps)"
    return f"{path} without onnxruntime"


def _onnx_model(runner, weights: Path, note: str | None = None, export_seconds: float = 0.0) -> Model:
    info = {"weights": str(weights), "backend": "onnx", "device": runner.device, "dtype": "fp32",
            **runner.model_config}
    return Model(runner, info, runner.postprocess, runner.short_side, note=note, train=runner.train,
                 export_seconds=export_seconds)


def pinned(onnx: Path) -> Path:
    """``onnx``, a shipped ONNX file, when its SHA-256 is its pin (``dbcli.weights.SHIPPED``, ~5 ms to
    check); else ``DBNetError`` (a damaged install)."""
    from dbcli.files import file_sha256
    from dbcli.weights import SHIPPED

    pins = {shipped.onnx: shipped.onnx_sha256 for shipped in SHIPPED if shipped.onnx_sha256}
    if file_sha256(onnx, "ONNX model") != pins[onnx.name]:
        raise DBNetError(f"{onnx}: damaged (its SHA-256 is not the one it shipped with); reinstall dbnet-cli")
    return onnx


def _load_onnx(path: Path, device: str, precision: str) -> Model:
    """A ``.onnx`` file as it is, a shipped ``.pt``'s shipped ONNX export (``dbcli.weights.shipped_onnx``:
    nothing exported at run time), or another ``.pt`` file's cached export (``dbcli.backends.export_once``)."""
    from dbcli.backends.onnx_backend import OnnxBackend
    from dbcli.weights import missing_weights_message, shipped_onnx

    onnx_precision(precision)
    if path.suffix.lower() == ".onnx":
        return _onnx_model(OnnxBackend(path, device), path)
    if not path.exists():
        raise DBNetError(missing_weights_message(path))
    check_regular_file(path, "weights file")  # (a folder, a FIFO, a device: one line, never opened)
    shipped = shipped_onnx(path)
    if shipped is not None:
        return _onnx_model(OnnxBackend(pinned(shipped), device), path)
    from dbcli.backends.export_once import exported_backend

    runner, seconds = exported_backend(path, device)
    return _onnx_model(runner, path, note=runner.note, export_seconds=seconds)


def _load_torch(path: Path, device: str, precision: str, note: str | None = None) -> Model:
    from dbcli.backends.torch_backend import TorchBackend
    from dbcli.weights import load_weights

    data = load_weights(path, onnx_hint="; the torch backend runs .pt files: use --backend onnx (or auto)")
    runner = TorchBackend(data, device, precision)
    info = {"weights": data["path"], "backend": "torch", "device": str(runner.device),
            "dtype": runner.precision, **data["model"]}
    return Model(runner, info, data.get("postprocess") or {}, data.get("short_side"),
                 maps_fn=runner, uses_torch=True, note=runner.note or note, train=data.get("train"))


def load_model(weights: str | Path | None = None, backend: str | None = defaults.BACKEND,
               device: str = defaults.DEVICE, precision: str = defaults.PRECISION, maps: bool = False) -> Model:
    """Load ``weights`` (a ``.pt`` file, a ``.onnx`` export, a shipped short name, or None for the
    default) on ``device`` (auto, cpu, cuda, cuda:N). ``backend``: ``auto`` (or None; see
    ``pick_backend``), ``torch`` or ``onnx`` (a ``.pt`` file is exported once and cached).
    ``precision`` (torch backend): fp32, bf16 or fp16 (see ``torch_backend.TorchBackend``). ``maps``:
    the threshold map is wanted too (torch). Raises ``DBNetError`` naming the file when it cannot be
    used; under ``auto``, an export that cannot be made falls back to torch with a note."""
    auto = (backend or "auto").lower() == "auto"
    path = weights_path(weights, "auto" if auto else (backend or "auto").lower())
    check_regular_file(path, "weights file", missing_ok=True)  # (a FIFO would hang onnxruntime)
    chosen = pick_backend(backend, path, device, precision, maps)
    precision = precision or defaults.PRECISION
    if chosen == "torch":
        require_torch(torch_need(backend, path, precision, maps))
        return _load_torch(path, device, precision)
    try:
        return _load_onnx(path, device, precision)
    except DBNetError as exc:
        if not auto or path.suffix.lower() == ".onnx" or not path.exists() or not torch_available():
            raise
        # (a file torch cannot read either gets the torch loader's error)
        return _load_torch(path, device, precision, note=f"using the torch backend: no ONNX model of {path} ({exc})")
