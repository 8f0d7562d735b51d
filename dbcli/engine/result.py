"""``ImageResult``: what ``dbcli.Detector`` returns per image or PDF page. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dbcli.engine.pdf import PageInfo
from dbcli.engine.records import ImageRecord, image_entry
from dbcli.postprocess.boxes import Detection

__all__ = ["ImageResult"]


@dataclass
class ImageResult:
    """One image's text regions.

    Attributes:
        file: the input's path, ``<path>#page=N`` for a PDF page, or ``<image N>`` for an array.
        width, height: the image's size in pixels (EXIF orientation applied unless ``exif=False``).
        detections: in reading order; each has ``.points``, an ``(n, 2)`` float64 array of ``[x, y]``
            in the image's pixels, and ``.score``, the region's mean text probability in [0, 1]; with
            ``text=True``, ``.text`` (the string read) and ``.text_score`` (in [0, 1]), else None.
        notes: lines for the user (a first frame used, a size cap).
        capped: the probability map had more than ``max_candidates`` candidate regions.
        crops: with ``crops=True``, one upright ``(h, w, 3)`` uint8 RGB array per detection.
        page: for a PDF page, its number, size in points and the rendering dpi.
        scale: the scale it was run at: ``policy`` (``auto`` or ``fixed``), ``factor`` (network /
            image pixels), network ``size`` [w, h], ``tiles`` and, when the policy decided,
            ``reason``.
    """

    file: str
    width: int
    height: int
    detections: list[Detection]
    notes: list[str] = field(default_factory=list)
    capped: bool = False
    crops: list[np.ndarray] | None = None
    page: PageInfo | None = None
    scale: dict | None = None

    @classmethod
    def from_record(cls, record: ImageRecord) -> ImageResult:
        """The public view of the pipeline's ``record``."""
        return cls(record.file, record.width, record.height, record.detections, record.notes,
                   record.capped, record.crops, record.page, record.scale)

    def to_dict(self) -> dict:
        """The image's entry in ``dbnet detect``'s JSON (``file``, ``width``, ``height``, ``page`` fields
        for a PDF page, ``scale``, ``detections`` with ``points`` and ``score``)."""
        return image_entry(self.file, self.width, self.height, self.detections, self.page, scale=self.scale)
