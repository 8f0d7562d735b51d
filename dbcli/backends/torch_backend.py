"""The torch backends (``dbcli.backends.base.Backend``): a live ``nn.Module`` (``ModuleBackend``, the
trainer's validation) and a model built from a weights file (``TorchBackend``, what ``dbnet detect``
and ``eval`` run). Both map ``(N, 3, H, W)`` float32 numpy batches to ``(N, H, W)`` float32 numpy
probability maps; ``maps`` also gives the threshold maps. The torch-free ONNX backend is
``dbcli.backends.onnx_backend``; the pipeline that feeds them is ``dbcli.engine.pipeline``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ModuleBackend:
    """A ``DBNet`` module as a backend, used as it is (no copy, no BN folding: the trainer's live
    model). ``autocast_dtype``: torch dtype for autocast (bf16/fp16), or None for fp32;
    ``channels_last``: the input's memory format (on CUDA, or when the model was converted)."""

    def __init__(self, model: Any, device: Any, autocast_dtype: Any = None, channels_last: bool | None = None):
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last

    def _autocast(self) -> Any:
        return self.torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                   enabled=self.autocast_dtype is not None)

    def _input(self, batch: np.ndarray) -> Any:
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, H, W)`` float32 -> ``(N, H, W)`` float32 probability maps."""
        with self.torch.inference_mode(), self._autocast():
            prob = self.model(self._input(batch))["prob"][:, 0]
            return prob.float().cpu().numpy()

    def maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prob, thresh) maps ``(N, H, W)`` each, for visualisation."""
        with self.torch.inference_mode(), self._autocast():
            out = self.model(self._input(batch), with_thresh=True)
            return out["prob"][:, 0].float().cpu().numpy(), out["thresh"][:, 0].float().cpu().numpy()

    thresh_maps = maps  # the older name


class TorchBackend(ModuleBackend):
    """A weights file's model as a backend. ``precision``: fp32, or autocast to bf16 (CPUs with
    AVX512-BF16 / AMX, and GPUs) or fp16 (CUDA); the maps are returned as float32 either way.
    ``fold_bn`` folds each BatchNorm into the conv before it (the same inference graph as ``dbnet
    export``; equal to the unfolded model within float rounding, and faster). ``note``: a remark for
    the user (a precision that this machine only emulates), or None."""

    def __init__(self, weights: dict, device: str = "auto", precision: str = "fp32", fold_bn: bool = True):
        import torch

        from dbcli.device import autocast_dtype, pick_device
        from dbcli.weights import build_model

        torch_device = pick_device(device)
        dtype, self.note = autocast_dtype(precision, torch_device)
        self.precision = precision.lower()
        model = build_model(weights, torch_device)
        if fold_bn:
            from dbcli.models.fold import fold_batchnorm

            fold_batchnorm(model)
        # Channels-last is faster on CUDA and on CPU (oneDNN): ~1.6x on this project's 2-core CPU,
        # same outputs to ~1e-7.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        super().__init__(model, torch_device, dtype, channels_last=True)
