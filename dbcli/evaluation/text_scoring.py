"""``dbnet eval --text``: the text read in each detection scored against the dataset's transcriptions
(``Sample.texts``: ICDAR 2015's ``gt_img_N.txt`` text field, a custom JSONL's ``"transcription"``).

Three figures, totals over the images (``dbcli.evaluation.text_metrics`` holds the rules):

* end to end (ICDAR 2015 Challenge 4 task 4.4, "generic" vocabulary): a detection is correct when it
  matches a ground-truth region (IoU > 0.5, one to one, the detection protocol's matching) and its
  text equals the transcription, case-insensitively (``texts_match``: one of ``!?.:,*"()·[]/'`` may be
  left off either end of the ground truth); ``###`` (or ``ignore``) regions are don't care; precision =
  correct / counted detections, recall = correct / counted ground truth;
* words: per image the words read (every detection's text split on whitespace, case-folded) against
  the words of the transcriptions, as multisets (``word_counts``): precision, recall, F1;
* CER: for each counted ground-truth region, the edit distance between its transcription and the
  text of the detection matched to it (``""`` when none was), case-insensitive, over the number of
  transcription characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dbcli.data.sample import Sample
from dbcli.evaluation.metrics import evaluate_image
from dbcli.evaluation.text_metrics import DONT_CARE, Counts, edit_distance, texts_match, total, word_counts


@dataclass(frozen=True)
class TextScores:
    """End-to-end and bag-of-words counts, and the CER's edit distance and characters, over images."""

    end_to_end: Counts
    words: Counts
    distance: int
    characters: int
    num_images: int

    @property
    def cer(self) -> float:
        """Character error rate: edit distance / transcription characters (0.0 with none)."""
        return self.distance / self.characters if self.characters else 0.0

    def to_dict(self) -> dict:
        """The ``text`` entry of ``dbnet eval --json``."""
        e, w = self.end_to_end, self.words
        return {"end_to_end": {"precision": e.precision, "recall": e.recall, "hmean": e.f1, "correct": e.correct,
                               "detections": e.predicted, "ground_truth": e.expected},
                "words": {"precision": w.precision, "recall": w.recall, "f1": w.f1, "correct": w.correct,
                          "read": w.predicted, "expected": w.expected},
                "cer": self.cer, "cer_distance": self.distance, "cer_characters": self.characters,
                "num_images": self.num_images}


@dataclass(frozen=True)
class ImageText:
    """One image's share of ``TextScores``."""

    end_to_end: Counts
    words: Counts
    distance: int
    characters: int


def score_image(sample: Sample, det_polygons: Sequence, det_texts: Sequence[str]) -> ImageText:
    """One image's counts (module doc) from its detections' polygons and texts. ``sample.texts`` must
    be set (one per ground-truth polygon)."""
    assert sample.texts is not None
    gt_texts = [DONT_CARE if ign else t for t, ign in zip(sample.texts, sample.ignore)]
    ignore = [t == DONT_CARE for t in gt_texts]
    match = evaluate_image(list(sample.polygons), ignore, list(det_polygons))
    read = {i: det_texts[j] for i, j in match.matches}
    correct = sum(texts_match(gt_texts[i], read[i]) for i in read)
    counted = [i for i, ign in enumerate(ignore) if not ign]
    distance = sum(edit_distance(read.get(i, "").casefold(), gt_texts[i].casefold()) for i in counted)
    characters = sum(len(gt_texts[i]) for i in counted)
    return ImageText(Counts(correct, match.num_det, match.num_gt), word_counts(det_texts, gt_texts), distance,
                     characters)


def summarize_text(images: Iterable[ImageText]) -> TextScores:
    """The totals of the per-image counts."""
    images = list(images)
    return TextScores(total(i.end_to_end for i in images), total(i.words for i in images),
                      sum(i.distance for i in images), sum(i.characters for i in images), len(images))
