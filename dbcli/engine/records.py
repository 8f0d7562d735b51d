"""What the pipeline yields per input: ``ImageRecord`` (an image's detections and what was asked for
besides) or ``Failure`` (an input that could not be used). Internal to dbnet's commands; the Python
API hands out ``dbcli.engine.result.ImageResult`` instead.

``ImageRecord.to_dict`` is an image's entry in ``dbnet detect``'s JSON, which is also what travels
between processes under torchrun (``from_dict``). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dbcli.engine.pdf import PageInfo
from dbcli.postprocess.boxes import Detection


def image_entry(file: str, width: int, height: int, detections: list[Detection], page: PageInfo | None = None,
                crop_files: list[str] | None = None, scale: dict | None = None) -> dict:
    """An image's entry in ``dbnet detect``'s JSON: ``file``, ``width``, ``height`` (pixels), for a PDF
    page ``page``, ``page_size_pt`` and ``dpi``, the ``scale`` it was run at
    (``dbcli.engine.scale_policy.scale_entry``) and ``detections`` (``points``, ``score`` and, with
    crops written, ``crop``)."""
    entry: dict = {"file": file, "width": width, "height": height}
    if page is not None:
        entry.update(page.to_dict())
    if scale is not None:
        entry["scale"] = scale
    entry["detections"] = [d.to_dict() for d in detections]
    if crop_files is not None:
        for det, crop in zip(entry["detections"], crop_files):
            det["crop"] = crop
    return entry


@dataclass
class ImageRecord:
    """One image's detections (``points`` in original-image pixels, in ``Settings.sort`` order), its
    size in pixels, and what was asked for besides: the decoded image, the network-resolution maps,
    the crops (one ``(h, w, 3)`` uint8 RGB array per detection), notes for the user.
    ``candidates``: the candidate regions of its probability map; ``capped``: more of them than
    ``max_candidates`` (only the first were post-processed). ``page``: for a PDF page, what maps its
    pixels back to the PDF; ``crop_files``: where ``dbnet detect --crops`` wrote the crops; ``scale``:
    the scale it was run at (the JSON's ``scale`` entry)."""

    index: int
    file: str
    width: int
    height: int
    detections: list[Detection]
    image: np.ndarray | None = None  # (H, W, 3) uint8 RGB, kept only when asked for
    prob: np.ndarray | None = None  # (h, w) network-resolution maps, only when asked for
    thresh: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # one line each: a frame dropped, a size cap, ...
    candidates: int = 0
    capped: bool = False
    cap_note: str | None = None  # the line that says the cap was hit, or None
    page: PageInfo | None = None
    crops: list[np.ndarray] | None = None
    crop_files: list[str] | None = None
    scale: dict | None = None  # the scale it was run at (scale_policy.scale_entry)

    def messages(self) -> list[str]:
        """Every line to tell the user about this image (its notes, then the candidate cap)."""
        return self.notes + ([self.cap_note] if self.cap_note else [])

    def to_dict(self) -> dict:
        """The image's entry in ``dbnet detect``'s JSON (``image_entry``)."""
        return image_entry(self.file, self.width, self.height, self.detections, self.page, self.crop_files,
                           self.scale)

    @classmethod
    def from_dict(cls, index: int, entry: dict) -> ImageRecord:
        """The record ``to_dict`` gave ``entry`` (what travels between processes under torchrun)."""
        page = None
        if "page" in entry:
            width_pt, height_pt = entry["page_size_pt"]
            page = PageInfo(entry["page"], width_pt, height_pt, entry["dpi"])
        dets = entry["detections"]
        crops = [d["crop"] for d in dets] if dets and all("crop" in d for d in dets) else None
        return cls(index, entry["file"], entry["width"], entry["height"],
                   [Detection(np.asarray(d["points"], np.float64), d["score"], d.get("text"), d.get("text_score"))
                    for d in dets],
                   page=page, crop_files=crops, scale=entry.get("scale"))


@dataclass
class Failure:
    """An input that could not be used; ``message`` names the file and the reason."""

    index: int
    file: str
    message: str
