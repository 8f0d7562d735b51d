"""dbnet: DBNet scene-text detection (Liao et al., AAAI 2020) as a library and a CLI.

The Python API: ``from dbcli import Detector`` (see ``dbcli.api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dbcli.version import __version__

__all__ = ["Detector", "ImageResult", "Detection", "DBNetError", "__version__"]

if TYPE_CHECKING:
    from dbcli.api import Detector
    from dbcli.engine.result import ImageResult
    from dbcli.errors import DBNetError
    from dbcli.postprocess.boxes import Detection


def __getattr__(name: str) -> Any:
    # Imported on first use: `dbnet --help` and the torch-free ONNX path stay light.
    if name == "Detector":
        from dbcli.api import Detector

        return Detector
    if name == "ImageResult":
        from dbcli.engine.result import ImageResult

        return ImageResult
    if name == "Detection":
        from dbcli.postprocess.boxes import Detection

        return Detection
    if name == "DBNetError":
        from dbcli.errors import DBNetError

        return DBNetError
    raise AttributeError(f"module 'dbcli' has no attribute {name!r}")
