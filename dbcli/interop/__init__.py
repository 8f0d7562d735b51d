"""Other model formats: ``export`` (ONNX, TorchScript) and ``paddleocr`` (PaddleOCR DB detectors -> dbnet
weights)."""

from __future__ import annotations

import math

from dbcli.errors import DBNetError


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` when it is a finite number > 0; else ``DBNetError`` (nan or inf would turn the
    numerical verification off: every difference compares below inf, none above nan)."""
    if not isinstance(tolerance, int | float) or not math.isfinite(tolerance) or tolerance <= 0:
        raise DBNetError(f"--tolerance {tolerance}: must be a finite number > 0 (the verification "
                         "cannot be turned off)")
    return float(tolerance)
