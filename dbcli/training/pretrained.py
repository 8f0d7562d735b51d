"""``--pretrained-backbone``: a torchvision ImageNet ResNet checkpoint loaded into a DBNet's backbone."""

from __future__ import annotations

import torch

from dbcli.errors import DBNetError
from dbcli.models.dbnet import DBNet
from dbcli.models.resnet import ResNet
from dbcli.outputs.atomic import check_regular_file


def _read_state(path: str) -> dict:
    """The tensors of a torchvision-style checkpoint (``module.`` prefixes dropped); ``DBNetError``."""
    check_regular_file(path, "a checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DBNetError(f"{path}: no such file") from None
    except Exception as exc:  # pickle, zip and weights_only errors have many types
        raise DBNetError(f"{path}: not a PyTorch state dict ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DBNetError(f"{path}: not a state dict of tensors (a torchvision ResNet checkpoint)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_backbone_state(model: DBNet, path: str) -> tuple[list[str], list[str]]:
    """Load a torchvision-style ImageNet ResNet checkpoint into ``model.backbone``.

    Returns ``(missing_keys, unexpected_keys)`` (``fc.*`` is always unexpected: there is no ``fc``).
    Raises ``DBNetError`` naming the file when it is not a checkpoint, when no key matches the
    backbone, or when tensor shapes do not fit (e.g. a ResNet-50 file for ``--arch resnet18``).
    """
    if not isinstance(model.backbone, ResNet):
        raise DBNetError(f"{path}: --pretrained-backbone loads torchvision ResNet weights; the "
                         f"{model.config.arch} backbone takes none (start from --init-weights instead)")
    state = _read_state(path)
    expected = model.backbone.state_dict()
    if not expected.keys() & state.keys():
        raise DBNetError(f"{path}: none of its {len(state)} keys is a {model.config.arch} backbone "
                         "parameter (expected torchvision names: conv1.weight, layer1.0.conv1.weight ...)")
    wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise DBNetError(f"{path}: {len(wrong)} tensors do not fit the {model.config.arch} backbone, e.g. "
                         f"{wrong[0]} {tuple(state[wrong[0]].shape)} vs {tuple(expected[wrong[0]].shape)} "
                         "(a checkpoint of another ResNet depth?)")
    result = model.backbone.load_state_dict(state, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)
