"""Every module of the package imports (a stale import left by a move fails here, not in a user's
hands), the shipped weights lie where ``weights_dir`` looks, and the build installs them with the package."""

from __future__ import annotations

import importlib
import pkgutil
from fnmatch import fnmatch
from pathlib import Path

import pytest

import dbcli
from dbcli.weights import SHIPPED, weights_dir

MODULES = sorted(m.name for m in pkgutil.walk_packages(dbcli.__path__, "dbcli.") if not m.name.endswith("__main__"))


def test_the_walk_finds_the_subpackages():
    for sub in ("dbcli.commands", "dbcli.engine", "dbcli.backends", "dbcli.workflows", "dbcli.outputs",
                "dbcli.models", "dbcli.training", "dbcli.evaluation"):
        assert sub in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.startswith(dbcli.__path__[0])


def test_shipped_weights_are_found_where_weights_dir_looks():
    """In a checkout, the top-level ``weights/`` folder beside the package (a wheel installs it as
    ``dbcli/shipped_weights/``: the next test and .ci/wheel_check)."""
    package = Path(dbcli.__path__[0])
    for shipped in SHIPPED:
        path = weights_dir() / shipped.file
        assert path.is_file() and path.stat().st_size > 100_000, path
    assert (weights_dir() / "README.md").is_file()  # the model card beside the files
    if not (package / "shipped_weights").is_dir():  # a checkout: the top-level folder
        assert weights_dir().samefile(package.parent / "weights")


def test_shipped_weights_are_package_data():
    """The build maps ``weights/`` into the package (``dbcli.shipped_weights``) with its .pt files and
    model card as package data, so that a wheel carries them."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(dbcli.__path__[0]).parent
    setup_py = (root / "setup.py").read_text()
    assert '"dbcli.shipped_weights"' in setup_py and 'package_dir={"dbcli.shipped_weights": "weights"}' in setup_py
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["dbcli.shipped_weights"]
    excluded = setuptools.get("exclude-package-data", {}).get("dbcli.shipped_weights", [])
    for shipped in SHIPPED:  # in the wheel: the .pt and its ONNX export; the R18 file stays in the repository
        files = [shipped.file, *([shipped.onnx] if shipped.onnx_sha256 else [])]
        for file in files:
            carried = any(fnmatch(file, p) for p in patterns) and not any(fnmatch(file, p) for p in excluded)
            assert carried == shipped.in_wheel, file
    for card in ("README.md", "RECOGNITION.md", "LICENSE-PaddleOCR.txt"):  # model cards and the licence
        assert any(fnmatch(card, pattern) for pattern in patterns), card
        assert (root / "weights" / card).is_file(), card
    assert "page.html" in setuptools["package-data"]["dbcli.serve"]  # dbnet serve's page
