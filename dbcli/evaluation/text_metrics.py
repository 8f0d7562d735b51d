"""Scores for read text: ICDAR 2015 end-to-end matching, bag-of-words precision / recall / F1 and
character error rate. Pure functions (no model, no files).

End to end (``end_to_end_image``), the rules followed (ICDAR 2015 Challenge 4, task 4.4, "generic"
vocabulary, i.e. no word-spotting filter):

* ground truth whose transcription is ``###`` is don't-care: it is not counted, and a detection lying
  more than 0.5 of its area inside one don't-care region is dropped (not counted either);
* ground truth and detections are matched one to one by IoU > 0.5, greedily in ground-truth then
  detection order, as in the detection protocol (``dbcli.evaluation.metrics``);
* a matched pair is correct when the texts are equal after case folding, or equal once one of the
  characters ``!?.:,*"()·[]/'`` is removed from the start and / or the end of the ground truth (the
  official script's ``transcription_match``); a matched pair with wrong text counts as a miss and a
  false detection (it is not re-matched);
* precision = correct / counted detections, recall = correct / counted ground truth, totals over images.

Bag of words (``word_counts``): per image, the texts are split on whitespace and case-folded; the
words read and the words expected are compared as multisets (each expected word can be matched once);
no boxes are involved. CER: Levenshtein distance (insert, delete, substitute cost 1) over the number of
expected characters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from dbcli.evaluation.metrics import evaluate_image

DONT_CARE = "###"
EDGE_CHARACTERS = "!?.:,*\"()·[]/'"


@dataclass(frozen=True)
class Counts:
    """Totals behind precision / recall: ``correct`` items of ``predicted`` ones, against ``expected``."""

    correct: int
    predicted: int
    expected: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.correct + other.correct, self.predicted + other.predicted,
                      self.expected + other.expected)

    @property
    def precision(self) -> float:
        """correct / predicted; 1.0 when nothing was predicted and nothing expected, else 0.0 if none."""
        return self.correct / self.predicted if self.predicted else float(self.expected == 0)

    @property
    def recall(self) -> float:
        """correct / expected; 1.0 when nothing was expected and nothing predicted, else 0.0 if none."""
        return self.correct / self.expected if self.expected else float(self.predicted == 0)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0.0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def total(counts: Iterable[Counts]) -> Counts:
    """The sum of per-image counts (micro average: precision etc. from the totals)."""
    out = Counts(0, 0, 0)
    for c in counts:
        out = out + c
    return out


def texts_match(expected: str, read: str) -> bool:
    """End-to-end text equality: equal after case folding, or after removing one ``EDGE_CHARACTERS``
    character from the start and / or end of ``expected``."""
    e, r = expected.casefold(), read.casefold()
    if e == r:
        return True
    head = e[1:] if e[:1] and e[0] in EDGE_CHARACTERS else e
    tail = e[:-1] if e[-1:] and e[-1] in EDGE_CHARACTERS else e
    both = head[:-1] if head[-1:] and head[-1] in EDGE_CHARACTERS else head
    return r in {head, tail, both}


def end_to_end_image(gt_polygons: Sequence, gt_texts: Sequence[str], det_polygons: Sequence,
                     det_texts: Sequence[str], iou_threshold: float = 0.5) -> Counts:
    """One image, ICDAR 2015 end to end (rules in the module docstring). Polygons are ``(K, 2)`` points
    in pixels; ``gt_texts[i] == "###"`` marks don't-care ground truth."""
    ignore = [t == DONT_CARE for t in gt_texts]
    match = evaluate_image(list(gt_polygons), ignore, list(det_polygons), iou_threshold=iou_threshold)
    correct = sum(texts_match(gt_texts[i], det_texts[j]) for i, j in match.matches)
    return Counts(correct, match.num_det, match.num_gt)


def words(text: str) -> list[str]:
    """The case-folded, whitespace-separated words of ``text``."""
    return text.casefold().split()


def word_counts(read: Iterable[str], expected: Iterable[str]) -> Counts:
    """One image, bag of words: the words of all texts ``read`` against those of all texts ``expected``
    (``###`` transcriptions left out), each expected word matched at most once."""
    got = Counter(w for t in read for w in words(t))
    want = Counter(w for t in expected if t != DONT_CARE for w in words(t))
    return Counts(sum((got & want).values()), sum(got.values()), sum(want.values()))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between ``a`` and ``b`` (unit costs), O(len(a) * len(b)) time."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def cer(pairs: Iterable[tuple[str, str]], case_sensitive: bool = False) -> float:
    """Character error rate over ``(read, expected)`` pairs: total edit distance / total expected
    characters (0.0 when nothing is expected and nothing read; 1.0 per character read from nothing)."""
    dist = chars = 0
    for read, expected in pairs:
        if not case_sensitive:
            read, expected = read.casefold(), expected.casefold()
        dist += edit_distance(read, expected)
        chars += len(expected)
    if chars == 0:
        return 0.0 if dist == 0 else 1.0
    return dist / chars
