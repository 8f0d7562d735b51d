"""A user's ``.pt`` file on the onnxruntime path: its cached ONNX export (``dbcli.backends.onnx_cache``),
made now when the cache lacks it, said on stderr with its time ("exporting runs/x/weights.pt to ONNX
once, cached in ~/.cache/dbnet ...") and handed back so that the closing line counts it.

Without torch an export cannot be made: one line says what to install or how to export elsewhere.
This module must not import torch (``onnx_cache`` imports the exporter only when it exports).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dbcli.errors import DBNetError
from dbcli.extras import install_command, torch_available


def needs_export(weights: Path) -> bool:
    """Whether loading ``weights`` (a readable ``.pt`` file) on onnxruntime exports it now: its cache
    file is not there, or the cache folder cannot be used (the export is then kept in memory and made
    again by each run). (An unreadable file: False; the cache reports it.)"""
    from dbcli.backends.cache_folder import CacheUnusable
    from dbcli.backends.onnx_cache import cache_path
    from dbcli.files import file_sha256

    try:
        sha = file_sha256(weights, "weights file")
    except OSError:
        return False
    try:
        return not cache_path(sha).is_file()
    except (OSError, CacheUnusable):
        return True


def cache_place() -> str:
    """Where an export goes, for the message: the cache folder, or memory when it cannot be used."""
    from dbcli.backends.cache_folder import CacheUnusable
    from dbcli.backends.onnx_cache import cache_dir

    try:
        return f"cached in {cache_dir()}"
    except (OSError, CacheUnusable):
        return "kept in memory (the cache folder cannot be used)"


def exported_backend(weights: Path, device: str = "cpu", threads: int | None = None):
    """``(OnnxBackend, seconds spent exporting)`` for the ``.pt`` file ``weights``: from the cache
    (0 s), or exported now with a line on stderr before (what, where) and after (how long). Raises
    ``DBNetError`` when it cannot be exported, in one line when torch is not installed."""
    from dbcli.backends.onnx_cache import cached_onnx_backend

    if not needs_export(weights):
        return cached_onnx_backend(weights, device, threads), 0.0
    if not torch_available():
        raise DBNetError(f"{weights}: a .pt file runs on onnxruntime once exported to ONNX, which needs PyTorch: "
                         f"{install_command('train')} (or run `dbnet export {weights.name}` where it is "
                         "installed and pass the .onnx file with --weights)")
    from dbcli.weights import load_weights

    load_weights(weights)  # a file that is no dbnet weights file gets its one-line error before the message
    print(f"exporting {weights} to ONNX once, {cache_place()} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    backend = cached_onnx_backend(weights, device, threads)
    seconds = time.perf_counter() - start
    print(f"exported {weights.name} in {seconds:.1f} s", file=sys.stderr, flush=True)
    return backend, seconds
