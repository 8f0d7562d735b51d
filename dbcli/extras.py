"""The distribution's name on PyPI and its extras: every install hint and the version lookup use these.

The distribution is ``dbnet-cli`` (``pip install dbnet-cli``); the command is ``dbnet`` and the import
``dbcli``. PyTorch is the extra ``train`` (training, export, convert, the torch backend): detection runs
on onnxruntime without it, and what needs it says so in one line (``require_torch``).

This module must not import torch.
"""

from __future__ import annotations

from dbcli.errors import DBNetError

DISTRIBUTION = "dbnet-cli"


def install_command(extra: str) -> str:
    """The exact command that installs ``extra`` (``pdf``, ``serve``, ``train``):
    ``pip install 'dbnet-cli[train]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def torch_available() -> bool:
    """Whether torch can be imported, found without importing it (an import costs seconds)."""
    from importlib.util import find_spec

    try:
        return find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses it, a broken install
        return False


def require_torch(what: str) -> None:
    """Raise ``DBNetError`` (``"<what> needs PyTorch: pip install 'dbnet-cli[train]'"``) when torch is not
    installed; nothing otherwise."""
    if not torch_available():
        raise DBNetError(f"{what} needs PyTorch: {install_command('train')}")
