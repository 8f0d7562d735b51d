"""Make the shipped ONNX models: each shipped ``.pt`` detector exported by dbnet's own exporter
(``dbcli.backends.export.export_bytes``: BatchNorm folded, verified against PyTorch to 1e-4), with the
metadata of the cache's export (``dbnet.source_sha256``: the ``.pt`` file's SHA-256), ``dbnet.source``
naming the file (not this machine's path). Prints the SHA-256 pins for ``dbcli.weights.SHIPPED``.

    python scripts/export_shipped.py            # writes weights/dbnet_mobilenetv3_{general,icdar15}.onnx

Needs torch and onnx (``pip install -e ".[train]"``).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from dbcli.backends.export import export_bytes
from dbcli.backends.onnx_cache import SHA_KEY, file_sha256
from dbcli.outputs.atomic import atomic_write_bytes
from dbcli.weights import SHIPPED, weights_dir


def export_shipped(pt_name: str) -> tuple[str, float]:
    """Export ``weights/<pt_name>`` to the ``.onnx`` beside it; ``(its SHA-256, max |P_onnx - P_torch|)``."""
    source = weights_dir() / pt_name
    data, max_diff, _ = export_bytes(source, "onnx", extra_metadata={SHA_KEY: file_sha256(source)})
    proto = onnx.load_from_string(data)
    for prop in proto.metadata_props:
        if prop.key == "dbnet.source":
            prop.value = pt_name
    target = source.with_suffix(".onnx")
    atomic_write_bytes(target, proto.SerializeToString())
    return file_sha256(target), max_diff


def main() -> None:
    files = dict.fromkeys(s.file for s in SHIPPED if s.onnx_sha256)  # the detectors shipped as ONNX too
    for file in files:
        sha, max_diff = export_shipped(file)
        print(f"{file}: {Path(file).with_suffix('.onnx')} sha256 {sha} (max |P_onnx - P_torch| {max_diff:.2g})")


if __name__ == "__main__":
    main()
