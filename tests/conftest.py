"""Test-session settings: the ONNX export cache (``dbcli.inference.onnx_cache``) lives in a temporary folder, so
that no test reads or writes the user's ``~/.cache/dbnet``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBNET_CACHE", str(tmp_path_factory.mktemp("dbnet-cache")))
        yield
