"""Images -> detections, for any backend that maps a normalised batch to probability maps.

A backend is a callable ``prob_fn(batch)`` with ``batch`` ``(N, 3, H, W)`` float32 numpy returning
``(N, H, W)`` float32 numpy probability maps. ``TorchBackend`` lives here; the torch-free ONNX one in
``dbcli.onnx_backend``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dbcli.imaging import prepare
from dbcli.postprocess import PostConfig, boxes_from_prob_map

ProbFn = Callable[[np.ndarray], np.ndarray]


def stack_padded(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ``(3, h_i, w_i)`` inputs into ``(N, 3, max h, max w)``, zero-padded bottom/right."""
    h = max(x.shape[1] for x in inputs)
    w = max(x.shape[2] for x in inputs)
    if all(x.shape[1:] == (h, w) for x in inputs):
        return np.stack(inputs)
    batch = np.zeros((len(inputs), 3, h, w), np.float32)
    for i, x in enumerate(inputs):
        batch[i, :, : x.shape[1], : x.shape[2]] = x
    return batch


def detect_batch(prob_fn: ProbFn, images: Sequence[np.ndarray], short_side: int = 736,
                 max_side: int | None = None, post: PostConfig = PostConfig(),
                 return_maps: bool = False):
    """Run one batch of ``(H, W, 3)`` uint8 RGB images; returns a list of detection lists (and the
    per-image probability maps at network resolution when ``return_maps``)."""
    inputs = [prepare(img, short_side, max_side) for img in images]
    maps = prob_fn(stack_padded(inputs))
    results, crops = [], []
    for img, x, prob in zip(images, inputs, maps):
        prob = prob[: x.shape[1], : x.shape[2]]
        results.append(boxes_from_prob_map(prob, img.shape[1], img.shape[0], post))
        crops.append(prob)
    return (results, crops) if return_maps else results


class TorchBackend:
    """PyTorch model as a ``prob_fn``. ``precision``: fp32, or autocast to bf16 (CPUs with AVX512-BF16 /
    AMX, and GPUs) or fp16 (CUDA); the maps are returned as float32 either way. ``fold_bn`` folds each
    BatchNorm into the conv before it (the same inference graph as ``dbnet export``; equal to the
    unfolded model within float rounding, and faster). ``note``: a remark for the user (a precision
    that this machine only emulates), or None."""

    def __init__(self, weights: dict, device: str = "auto", precision: str = "fp32", fold_bn: bool = True):
        import torch

        from dbcli.device import autocast_dtype, pick_device
        from dbcli.weights import build_model

        self.torch = torch
        self.device = pick_device(device)
        self.autocast_dtype, self.note = autocast_dtype(precision, self.device)
        self.precision = precision.lower()
        self.model = build_model(weights, self.device)
        if fold_bn:
            from dbcli.export import fold_batchnorm

            fold_batchnorm(self.model)
        # Channels-last is faster on CUDA and on CPU (oneDNN): ~1.6x on this project's 2-core CPU,
        # same outputs to ~1e-7.
        self.model = self.model.to(memory_format=torch.channels_last)

    def _autocast(self):
        return self.torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                   enabled=self.autocast_dtype is not None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            prob = self.model(x)["prob"][:, 0]
            return prob.float().cpu().numpy()

    def thresh_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prob, thresh) maps ``(N, H, W)`` each, for visualisation."""
        torch = self.torch
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
            out = self.model(x, with_thresh=True)
            return out["prob"][:, 0].float().cpu().numpy(), out["thresh"][:, 0].float().cpu().numpy()
