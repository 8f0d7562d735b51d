"""Text direction: which crops read upside down (PP-OCR's 0.6 MB ch_ppocr_mobile_v2.0_cls classifier,
two classes: 0 and 180 degrees)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dbcli.recognition.model import CLASSIFIER, open_session
from dbcli.recognition.preprocess import normalize_batch

CLS_HEIGHT, CLS_WIDTH = 48, 192  # px: the classifier's input (a crop resized to 48 px high, padded to 192)


WINDOWS = 3  # a long crop is judged on up to this many windows (left, middle, right), probabilities averaged


def text_windows(crop: np.ndarray) -> list[np.ndarray]:
    """``crop`` itself when no wider than the classifier input's aspect (192 / 48 = 4), else up to
    ``WINDOWS`` windows that wide, spread evenly from its left end to its right end."""
    h, w = crop.shape[:2]
    span = max(1, (CLS_WIDTH * h) // CLS_HEIGHT)
    if w <= span:
        return [crop]
    n = min(WINDOWS, -(-w // span))
    starts = np.linspace(0, w - span, n).round().astype(int)
    return [crop[:, s:s + span] for s in starts]


class DirectionClassifier:
    """``classifier(crops) -> list[bool]``: True where a crop reads upside down with probability above
    ``threshold`` (PaddleOCR's 0.9), so turning it 180 degrees makes it upright.

    Args:
        path: the ONNX classifier; None: the shipped one (SHA-256 checked).
        threshold: probability of "180" needed to turn a crop.
        batch_size: crops per onnxruntime call.
        threads: onnxruntime intra-op threads (None: its default).
        providers: onnxruntime execution providers (None: CPU).
    """

    def __init__(self, path: str | Path | None = None, *, threshold: float = 0.9, batch_size: int = 16,
                 threads: int | None = None, providers: list[str] | None = None) -> None:
        shipped = path is None
        self.path = CLASSIFIER.path if shipped else Path(path)  # type: ignore[arg-type]
        self.session = open_session(self.path, CLASSIFIER.what, CLASSIFIER.sha256 if shipped else None,
                                    threads, providers)
        self.input_name = self.session.get_inputs()[0].name
        self.threshold = threshold
        self.batch_size = batch_size

    def upside_down_probability(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N,)`` float: for each ``(h, w, 3)`` uint8 RGB crop (readable: >= 2 px each side), the
        probability that it reads upside down: the mean over up to ``WINDOWS`` windows of the crop, each
        as wide as the classifier's input aspect (a long line squeezed into 192 px would be unreadable)."""
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, crop in enumerate(crops):
            for w in text_windows(crop):
                windows.append(w)
                owner.append(i)
        probs = np.zeros(len(windows), dtype=np.float32)
        for start in range(0, len(windows), self.batch_size):
            part = windows[start:start + self.batch_size]
            batch = normalize_batch(part, CLS_HEIGHT, CLS_WIDTH)
            probs[start:start + len(part)] = self.session.run(None, {self.input_name: batch})[0][:, 1]
        sums = np.bincount(owner, weights=probs, minlength=len(crops))
        counts = np.bincount(owner, minlength=len(crops))
        return (sums / np.maximum(counts, 1)).astype(np.float32)

    def __call__(self, crops: list[np.ndarray]) -> list[bool]:
        """For each crop, whether it reads upside down (probability above ``threshold``)."""
        return [bool(p > self.threshold) for p in self.upside_down_probability(crops)]
