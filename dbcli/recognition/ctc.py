"""Greedy CTC decoding: the best class per time step, repeats merged, blanks dropped."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


class Reading(NamedTuple):
    """The text read in one crop and its score: the mean probability of the time steps that gave its
    characters, in [0, 1] (0.0 when nothing was read)."""

    text: str
    score: float


def ctc_greedy_decode(probs: np.ndarray, table: Sequence[str], blank: int = 0) -> Reading:
    """Decode one sequence of class probabilities.

    Args:
        probs: ``(T, C)`` float, per time step the probability (softmax output) of each class.
        table: the characters, ``table[c]`` for class ``c``; ``table[blank]`` is the CTC blank.
        blank: the blank's class index.

    Returns:
        The text (runs of the same class merged into one character, blanks removed; a class outside
        ``table`` is dropped, never replaced by another character) and the mean best probability over
        the kept steps (0.0 when none are kept).
    """
    if probs.ndim != 2 or probs.shape[0] == 0:
        return Reading("", 0.0)
    best = probs.argmax(axis=1)
    conf = probs[np.arange(len(best)), best]
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]  # a run of one class is one character (a blank between repeats it)
    keep &= (best != blank) & (best < len(table))
    if not keep.any():
        return Reading("", 0.0)
    text = "".join(table[i] for i in best[keep])
    return Reading(text, float(conf[keep].mean()))
