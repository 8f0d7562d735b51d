"""The version of dbnet, stated once (read by ``dbcli.__version__``, the wheel's metadata through
``pyproject.toml`` and the ONNX export cache's file names). Imports nothing of the package."""

__version__ = "0.1.0"
