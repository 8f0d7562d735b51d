"""DBNet models: backbones (``resnet``, ``mobilenetv3``), necks, the DB head, and ``DBNet`` itself."""

from dbcli.models.dbnet import ARCHS, DBNet, ModelConfig, count_parameters
from dbcli.models.mobilenetv3 import MobileNetV3
from dbcli.models.resnet import ResNet

__all__ = ["ARCHS", "DBNet", "MobileNetV3", "ModelConfig", "ResNet", "count_parameters"]
