"""Other model formats: ``export`` (ONNX, TorchScript) and ``paddleocr`` (PaddleOCR DB detectors -> dbnet
weights)."""

from __future__ import annotations

import math

from dbcli.errors import DBNetError


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` when it is a finite number; else ``DBNetError`` (nan or inf would turn the
    numerical verification off: every difference compares below inf, none above nan). 0 or less is
    allowed: no export meets it, so it fails the verification (and writes nothing)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance):
        raise DBNetError(f"--tolerance {tolerance}: must be a finite number (the verification cannot be "
                         "turned off)")
    return float(tolerance)
