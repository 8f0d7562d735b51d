"""Every module of the package imports (a stale import left by a move fails here, not in a user's
hands), and the package lists its shipped weights where ``weights_dir`` looks."""

from __future__ import annotations

import importlib
import pkgutil

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


def test_shipped_weights_are_package_data():
    for shipped in SHIPPED:
        path = weights_dir() / shipped.file
        assert path.is_file() and path.stat().st_size > 100_000, path
    assert weights_dir().parent.samefile(dbcli.__path__[0])  # inside the package, not beside it
