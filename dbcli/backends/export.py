"""A weights file -> the bytes of its ONNX or TorchScript export, BatchNorm folded and verified against
PyTorch: what ``dbnet export`` writes (``dbcli.interop.export``) and what the ONNX backend caches
(``dbcli.backends.onnx_cache``).

The exported graph maps a normalised image batch ``images`` ``(N, 3, H, W)`` float32 (RGB, ImageNet
mean/std, see ``dbcli.imaging.normalize``) to the probability map ``prob`` ``(N, 1, H, W)``; N, H and W
are dynamic (any H, W: the graph pads to a multiple of 32 and crops back, as the model does).
The threshold branch is left out: inference needs only P (SPEC, "Differentiable binarization").

An ONNX file carries what ``dbnet detect --backend onnx`` needs in its ``metadata_props`` (read
without torch by ``dbcli.backends.onnx_backend``): ``dbnet.format``, ``dbnet.model`` (arch, dcn, k),
``dbnet.postprocess`` (threshold defaults), ``dbnet.short_side``, ``dbnet.normalization``,
``dbnet.source``, ``dbnet.train`` (the weights file's training data, when known) and
``dbnet.verified_max_diff``.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dbcli import defaults
from dbcli.errors import DBNetError
from dbcli.models.fold import fold_batchnorm

ONNX_FORMAT = "dbnet-onnx/1"
TOLERANCE = 1e-4  # max |P_export - P_torch| allowed in fp32 (issue 4)
OPSET = 17
TRACE_SIZE = (128, 160)  # any multiple of 32: every size stays dynamic in the traced graph


# --- the exported module ---------------------------------------------------------------------------
class ProbMapModel(nn.Module):
    """The inference graph: padding to a multiple of 32 traced as shape arithmetic (so H and W stay
    dynamic in the export), the model, the crop back; outputs the probability map only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2], images.shape[-1]
        pad_h = (32 - h % 32) % 32
        pad_w = (32 - w % 32) % 32
        x = F.pad(images, [0, pad_w, 0, pad_h])
        # The model's own padding branch sees a multiple of 32 and does nothing.
        return self.model(x, with_thresh=False)["prob"][:, :, :h, :w]


def inference_module(model: nn.Module) -> ProbMapModel:
    """An eval-mode, BN-folded, float32 CPU copy of ``model`` wrapped to output P only."""
    folded = fold_batchnorm(copy.deepcopy(model).float().cpu().eval())
    return ProbMapModel(folded).eval()


def verification_images(batch: int = 2, height: int = 170, width: int = 230, seed: int = 0) -> list[np.ndarray]:
    """Deterministic ``(height, width, 3)`` uint8 RGB test images: text-like strokes on textured
    backgrounds."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for i in range(batch):
        img = np.empty((height, width, 3), np.uint8)
        img[:] = rng.integers(60, 230, 3)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        for j in range(3):
            cv2.putText(img, f"TEXT {i}{j}", (int(rng.integers(0, width // 2)), 35 + 50 * j),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.8 + 0.3 * j, tuple(int(c) for c in rng.integers(0, 255, 3)), 2)
        out.append(img)
    return out


def verification_input(batch: int = 2, height: int = 170, width: int = 230, seed: int = 0) -> np.ndarray:
    """``verification_images`` as a normalised network batch ``(batch, 3, height, width)``. The default
    size is deliberately not a multiple of 32 and differs from the trace size (checks dynamic shapes)."""
    from dbcli.imaging import normalize

    return np.stack([normalize(img) for img in verification_images(batch, height, width, seed)])


# --- export ----------------------------------------------------------------------------------------
def _metadata(weights: dict) -> dict[str, str]:
    from dbcli.imaging import MEAN, STD

    return {
        "dbnet.format": ONNX_FORMAT,
        "dbnet.model": json.dumps(weights["model"]),
        "dbnet.postprocess": json.dumps(weights.get("postprocess") or {}),
        "dbnet.short_side": str(int(weights.get("short_side") or defaults.SHORT_SIDE)),
        "dbnet.normalization": json.dumps({"layout": "NCHW RGB", "mean": [float(v) for v in MEAN],
                                           "std": [float(v) for v in STD], "formula": "(pixel - mean) / std"}),
        "dbnet.source": str(weights.get("path", "")),
        **({"dbnet.train": json.dumps(weights["train"], default=str)} if weights.get("train") else {}),
    }


def _ort_session(data: bytes):
    from dbcli.backends.onnx_backend import make_session

    return make_session(data, device="cpu")


def _export_onnx(module: ProbMapModel, weights: dict, opset: int) -> bytes:
    try:
        import onnx
    except ImportError:
        raise DBNetError("ONNX export needs the onnx package (pip install 'dbnet-cli[train]')") from None
    buffer = io.BytesIO()
    trace_input = torch.zeros(1, 3, TRACE_SIZE[0], TRACE_SIZE[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notices
        try:
            torch.onnx.export(module, (trace_input,), buffer,  # type: ignore[arg-type]  # a BytesIO works
                              input_names=["images"], output_names=["prob"],
                              dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                            "prob": {0: "batch", 2: "height", 3: "width"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        except Exception as exc:
            raise DBNetError(f"ONNX export failed ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    module.eval()  # torch.onnx.export restores the caller's mode; keep eval for the comparison
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = ("DBNet probability map. Input 'images': float32 (N, 3, H, W), RGB normalised "
                        "with ImageNet mean/std; output 'prob': (N, 1, H, W) in [0, 1].")
    del proto.metadata_props[:]
    for key, value in _metadata(weights).items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def _export_torchscript(module: ProbMapModel, weights: dict) -> bytes:
    trace_input = torch.zeros(1, 3, TRACE_SIZE[0], TRACE_SIZE[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(module, trace_input, check_trace=False)
        buffer = io.BytesIO()
        meta = {k.removeprefix("dbnet."): v for k, v in _metadata(weights).items()}
        torch.jit.save(traced, buffer, _extra_files={"dbnet.json": json.dumps(meta)})
    return buffer.getvalue()


def export_bytes(weights_path: str | Path | None, fmt: str = "onnx", opset: int = OPSET,
                 tolerance: float = TOLERANCE, extra_metadata: dict[str, str] | None = None
                 ) -> tuple[bytes, float, tuple[int, ...]]:
    """``(file bytes, max |P_export - P_torch|, verification input shape)``: the export of
    ``weights_path`` in memory, its probability map (run from these very bytes) compared with the
    PyTorch model's (unfolded, fp32) on ``verification_input()``. ``extra_metadata``: more ONNX
    ``metadata_props``. Raises ``DBNetError`` when the export fails or the max difference is
    ``>= tolerance``."""
    from dbcli.weights import build_model, load_weights

    fmt = fmt.lower()
    if fmt not in ("onnx", "torchscript"):
        raise DBNetError(f"unknown export format {fmt!r} (onnx or torchscript)")
    weights = load_weights(weights_path)
    reference = build_model(weights, "cpu")
    module = inference_module(reference)

    test = verification_input()
    with torch.inference_mode():
        expected = reference(torch.from_numpy(test))["prob"].numpy()

    if fmt == "onnx":
        data = _export_onnx(module, weights, opset)
        # Verify the exact graph we write, with the session settings `detect --backend onnx` uses.
        got = _ort_session(data).run(["prob"], {"images": test})[0]
    else:
        data = _export_torchscript(module, weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        with torch.inference_mode():
            got = loaded(torch.from_numpy(test)).numpy()
    max_diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not np.isfinite(max_diff) or max_diff >= tolerance:
        raise DBNetError(f"{fmt} export verification FAILED: max |P_export - P_torch| = {max_diff:.3g} "
                         f"(must be < {tolerance:g}); nothing written")
    if fmt == "onnx":
        import onnx

        proto = onnx.load_from_string(data)
        for key, value in {"dbnet.verified_max_diff": f"{max_diff:.3g}", **(extra_metadata or {})}.items():
            proto.metadata_props.add(key=key, value=value)
        data = proto.SerializeToString()
    return data, max_diff, tuple(test.shape)
