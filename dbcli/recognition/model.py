"""The recognition models on disk: where the shipped files are, their SHA-256 pins, opening them with
onnxruntime and reading the recogniser's character dictionary. Every failure is one ``DBNetError``
line naming the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from dbcli.errors import DBNetError
from dbcli.files import check_regular_file, file_sha256

BLANK = ""  # CTC blank: class 0 of the recogniser's output; decodes to nothing


@dataclass(frozen=True)
class ShippedModel:
    """A shipped ONNX file: its name in the weights folder and the SHA-256 it must have."""

    file: str
    sha256: str
    what: str  # for messages: "text recogniser", "text direction classifier"

    @property
    def path(self) -> Path:
        return weights_dir() / self.file


RECOGNIZER = ShippedModel("PP-OCRv6_rec_small.onnx",
                          "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884", "text recogniser")
CLASSIFIER = ShippedModel("ch_ppocr_mobile_v2.0_cls.onnx",
                          "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
                          "text direction classifier")


def weights_dir() -> Path:
    """The folder of the shipped models (``dbcli.weights.weights_dir``: ``weights/`` in a checkout,
    ``dbcli/shipped_weights/`` in a wheel), where the recognition models and their model card
    ``RECOGNITION.md`` live beside the detectors."""
    from dbcli.weights import weights_dir as shipped_dir

    return shipped_dir()


def open_session(path: str | Path, what: str, sha256: str | None = None, threads: int | None = None,
                 providers: list[str] | None = None) -> ort.InferenceSession:
    """An onnxruntime session on ``path``. With ``sha256`` (the shipped files) the file must hash to it:
    a truncated or altered file is a one-line ``DBNetError`` naming it, as is a missing file or one that
    onnxruntime cannot load. ``threads``: intra-op threads (None: onnxruntime's default)."""
    path = Path(path)
    check_regular_file(path, f"{what} model")  # (missing, a folder, a FIFO: one line, never opened)
    if sha256 is not None:
        found = file_sha256(path, f"{what} model")
        if found != sha256:
            raise DBNetError(f"{path}: damaged {what} model (SHA-256 {found[:16]}..., expected {sha256[:16]}...);"
                             " reinstall dbnet-cli")
    options = ort.SessionOptions()
    # idle worker threads sleep instead of spinning (as dbnet's detector sessions): on a busy machine
    # spinning threads take cores from the work that is left
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own error types (InvalidProtobuf, Fail, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DBNetError(f"{path}: not a {what} model onnxruntime can load ({first[:200]})") from None


def read_dictionary(session: ort.InferenceSession, path: str | Path) -> list[str]:
    """The recogniser's class table, index = output class: ``[BLANK, *characters, " "]``, PaddleOCR's
    layout (the characters are the ONNX metadata ``character``, one a line; the space is appended last).
    Its length must equal the model's number of output classes."""
    meta = session.get_modelmeta().custom_metadata_map
    if "character" not in meta:
        raise DBNetError(f"{path}: the recogniser model carries no character dictionary (metadata 'character')")
    table = [BLANK, *meta["character"].split("\n"), " "]
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(table):
        raise DBNetError(f"{path}: the model has {classes} output classes but its dictionary {len(table)}")
    return table
