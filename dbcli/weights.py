"""The weights file format shared by train, detect, eval, export and visualize.

A weights file is a plain dict saved with ``torch.save`` and loadable with ``weights_only=True``::

    {"format": "dbnet-weights", "version": 1,
     "model": {"arch": "resnet18", "dcn": False, "k": 50.0},
     "state_dict": {...},              # fp16 or fp32 tensors
     "postprocess": {"thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5, ...},
     "short_side": 736,
     "train": {...}, "metrics": {...}} # free-form metadata (command line, data, figures)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbcli.errors import DBNetError
from dbcli.fileio import atomic_torch_save

if TYPE_CHECKING:  # torch is imported lazily: the ONNX detect path uses this module without torch
    import torch

    from dbcli.models import DBNet

FORMAT = "dbnet-weights"


@dataclass(frozen=True)
class ShippedWeights:
    """A weights file in ``weights/``, selectable by a short name (``--weights general``)."""

    name: str
    file: str
    use: str  # what it is for, one line (shown in --help and the README)


SHIPPED = (
    ShippedWeights("general", "dbnet_mobilenetv3_general.pt",
                   "text lines in documents, receipts, screenshots, signs and photos: PaddleOCR's "
                   "PP-OCRv3 detector, converted (the default)"),
    ShippedWeights("icdar15", "dbnet_mobilenetv3_icdar15.pt",
                   "words in street-level photos: the general model fine-tuned on ICDAR 2015 (the "
                   "default of `dbnet eval --dataset icdar15`)"),
    ShippedWeights("icdar15-r18", "dbnet_resnet18_icdar15.pt",
                   "words in street-level photos: DB-ResNet-18 trained here from scratch on ICDAR 2015"),
)
DEFAULT_WEIGHTS = "general"
DEFAULT_ICDAR15_WEIGHTS = "icdar15"
DEFAULT_WEIGHTS_NAME = next(w.file for w in SHIPPED if w.name == DEFAULT_WEIGHTS)


def weights_dir() -> Path:
    """``weights/`` beside the package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parent.parent / "weights"


def shipped_names() -> str:
    """``general, icdar15, icdar15-r18``: the short names, for messages and --help."""
    return ", ".join(w.name for w in SHIPPED)


def resolve_weights(value: str | Path | None, default: str = DEFAULT_WEIGHTS) -> Path:
    """The weights file meant by ``value``: an existing path as it is, a short name of ``SHIPPED``
    (``general``) as its file in ``weights/``, anything else as a path (which the loader reports as
    missing). ``None``: ``$DBNET_WEIGHTS`` if set, else the shipped file named ``default``."""
    import os

    if value is None:
        env = os.environ.get("DBNET_WEIGHTS")
        value = env if env else default
    path = Path(value)
    if path.exists():
        return path
    for shipped in SHIPPED:
        if str(value) == shipped.name:
            return weights_dir() / shipped.file
    return path


def default_weights_path() -> Path:
    """The file ``dbnet detect`` uses without ``--weights`` (``$DBNET_WEIGHTS`` overrides it)."""
    return resolve_weights(None)


def make_weights(model: DBNet, half: bool = True, **meta) -> dict:
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    return {"format": FORMAT, "version": 1, "model": model.config.to_dict(), "state_dict": state, **meta}


def save_weights(path: str | Path, model: DBNet, half: bool = True, **meta) -> Path:
    return atomic_torch_save(make_weights(model, half, **meta), path)


def load_weights(path: str | Path | None) -> dict:
    """Read and check a weights file: a path or a shipped short name (``None``: the default one).
    Raises ``DBNetError``."""
    path = resolve_weights(path)
    if not path.exists():
        raise DBNetError(f"{path}: weights file not found (pass a file or one of the shipped names: "
                         f"{shipped_names()})")
    if path.suffix == ".onnx":
        raise DBNetError(f"{path}: an ONNX model; use --backend onnx")
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DBNetError(f"{path}: not a loadable weights file ({exc.__class__.__name__})") from None
    if isinstance(data, dict) and data.get("format") != FORMAT and "model_state" in data:
        data = data["weights"]  # a training checkpoint carries its weights dict
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DBNetError(f"{path}: not a dbnet weights file (no format tag {FORMAT!r})")
    data["path"] = str(path)
    return data


def build_model(weights: dict, device: str | torch.device = "cpu") -> DBNet:
    """A DBNet in eval mode with the weights loaded, in float32 on ``device``."""
    from dbcli.models import DBNet, ModelConfig

    try:
        config = ModelConfig.from_dict(weights["model"])
    except (TypeError, ValueError) as exc:
        raise DBNetError(f"{weights.get('path', 'weights')}: bad model entry ({exc})") from None
    model = DBNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DBNetError(f"{weights.get('path', 'weights')}: does not match the model "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
