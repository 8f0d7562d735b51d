"""``Recognizer``: crops in, ``Reading(text, score)`` out; batching, direction and long lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dbcli.recognition.ctc import Reading, ctc_greedy_decode
from dbcli.recognition.direction import DirectionClassifier
from dbcli.recognition.model import RECOGNIZER, open_session, read_dictionary
from dbcli.recognition.preprocess import (
    REC_HEIGHT,
    as_rgb,
    aspect,
    batch_width,
    buckets,
    gap_at,
    is_readable,
    normalize_batch,
    split_points,
)

EMPTY = Reading("", 0.0)


@dataclass(frozen=True)
class RecognizerSettings:
    """How crops are batched and read (defaults measured in ``bench/bench_ocr.py``).

    batch_size: crops per onnxruntime call. bucket_spread: a batch holds crops whose widths differ by
    at most this factor. min_width: px, the narrowest padded input (PaddleOCR pads to 320; 0 reads a
    short word at its own width, 1.5x faster for the same text). max_aspect: crops wider than this many
    heights are cut (in the gaps between characters) into pieces read one by one and joined (the
    model reads a line whole better: exact to 141:1 in bench, where cutting cost 0.4% CER and squeezing
    to 25:1 100%; the cut bounds the output, ``T = W / 8`` steps x 18,710 classes x 4 bytes per crop).
    direction: turn upside-down crops (the direction classifier, p(180) > direction_threshold).
    recheck_below: a crop read with a score under this is also read turned 180 degrees, and the
    reading with the higher score kept (catches the upside-down crops the classifier misses; 0: never).
    """

    batch_size: int = 8
    bucket_spread: float = 1.5
    min_width: int = 0
    max_aspect: float = 60.0
    direction: bool = True
    direction_threshold: float = 0.9
    recheck_below: float = 0.8


class Recognizer:
    """Read the text in crops: ``recognizer(crops) -> list[Reading]``.

    Args:
        model: the recogniser ONNX (a CTC model with its dictionary in metadata ``character``, PaddleOCR
            layout); None: the shipped PP-OCRv6 small rec (SHA-256 checked).
        classifier: the direction classifier ONNX; None: the shipped one.
        settings: batching, long-line and direction settings.
        threads: onnxruntime intra-op threads (None: its default).
        providers: onnxruntime execution providers (None: CPU; ``["CUDAExecutionProvider", ...]``).
    """

    def __init__(self, model: str | Path | None = None, classifier: str | Path | None = None, *,
                 settings: RecognizerSettings = RecognizerSettings(), threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        shipped = model is None
        self.path = RECOGNIZER.path if shipped else Path(model)  # type: ignore[arg-type]
        self.session = open_session(self.path, RECOGNIZER.what, RECOGNIZER.sha256 if shipped else None,
                                    threads, providers)
        self.table = read_dictionary(self.session, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.settings = settings
        self.direction = (DirectionClassifier(classifier, threshold=settings.direction_threshold, threads=threads,
                                              providers=providers) if settings.direction else None)

    def __call__(self, crops: Sequence[np.ndarray]) -> list[Reading]:
        """One ``Reading`` per crop, in order.

        Args:
            crops: ``(h, w, 3)`` uint8 RGB images of one line or word each (``(h, w)`` grey and RGBA
                are accepted). Empty, under 2 px, or flat ones read as ``Reading("", 0.0)``.

        Returns:
            ``Reading(text, score)`` per crop; score in [0, 1].
        """
        rgb = [as_rgb(c, i) for i, c in enumerate(crops)]
        live = [i for i, c in enumerate(rgb) if is_readable(c)]
        upright = self._upright([rgb[i] for i in live])
        read = self._recheck(upright, self._read(upright))
        results = [EMPTY] * len(rgb)
        for k, i in enumerate(live):
            results[i] = read[k]
        return results

    def _recheck(self, crops: list[np.ndarray], read: list[Reading]) -> list[Reading]:
        """Crops read with a score under ``recheck_below`` read again turned 180 degrees; the better
        reading of the two kept (with direction on only)."""
        if not self.settings.direction or self.settings.recheck_below <= 0:
            return read
        low = [k for k, r in enumerate(read) if r.score < self.settings.recheck_below]
        again = self._read([np.ascontiguousarray(crops[k][::-1, ::-1]) for k in low])
        out = list(read)
        for k, r in zip(low, again):
            out[k] = r if r.score > read[k].score else read[k]
        return out

    def _read(self, crops: list[np.ndarray]) -> list[Reading]:
        """Read upright crops, long ones in pieces."""
        pieces, owner, joins = self._pieces(crops)
        read = self.read_lines(pieces)
        return [_join([read[p] for p in range(len(pieces)) if owner[p] == k], joins[k]) for k in range(len(crops))]

    def read_lines(self, crops: list[np.ndarray]) -> list[Reading]:
        """Read readable upright crops as they are (no direction, no splitting), batched by width."""
        s = self.settings
        results = [EMPTY] * len(crops)
        for group in buckets([aspect(c) for c in crops], s.batch_size, s.bucket_spread):
            part = [crops[i] for i in group]
            batch = normalize_batch(part, REC_HEIGHT, batch_width(part, REC_HEIGHT, s.min_width))
            probs = self.session.run(None, {self.input_name: batch})[0]
            for i, p in zip(group, probs):
                results[i] = ctc_greedy_decode(p, self.table)
        return results

    def _upright(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        if self.direction is None or not crops:
            return crops
        return [np.ascontiguousarray(c[::-1, ::-1]) if flip else c for c, flip in zip(crops, self.direction(crops))]

    def _pieces(self, crops: list[np.ndarray]) -> tuple[list[np.ndarray], list[int], list[list[bool]]]:
        """Crops wider than ``max_aspect`` cut into pieces: the pieces, the crop each came from, and
        per crop whether each cut fell in a word gap (joined with a space) or inside a word."""
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        joins: list[list[bool]] = []
        for k, crop in enumerate(crops):
            cuts = split_points(crop, self.settings.max_aspect)
            bounds = [0, *cuts, crop.shape[1]]
            for a, b in zip(bounds[:-1], bounds[1:]):
                pieces.append(crop[:, a:b])
                owner.append(k)
            joins.append([gap_at(crop, c) for c in cuts])
        return pieces, owner, joins


def _join(parts: list[Reading], spaces: list[bool]) -> Reading:
    """The readings of a long crop's pieces as one: texts joined (a space where the cut was a word gap),
    the score the characters-weighted mean."""
    if len(parts) == 1:
        return parts[0]
    text = parts[0].text
    for gap, part in zip(spaces, parts[1:]):
        sep = " " if gap and text and part.text and not text.endswith(" ") and not part.text.startswith(" ") else ""
        text += sep + part.text
    weights = [len(p.text) for p in parts]
    score = sum(w * p.score for w, p in zip(weights, parts)) / sum(weights) if sum(weights) else 0.0
    return Reading(text.strip(), float(score))
