"""Test-session settings and shared fixtures: the ONNX export cache (``dbcli.backends.onnx_cache``)
lives in a temporary folder, so that no test reads or writes the user's ``~/.cache/dbnet``;
``model_files`` (the planted model's weights files, per module), ``one_thread`` (torch on one
thread for the test, as the hardening tests run) and ``cli_runner`` (the suite's one CLI runner).

Tests live in folders by area (``engine/``, ``cli/``, ``models/``, ``data/``, ``training/``, ``serve/``,
``project/``); the helpers they share sit here beside this file (``synth``, ``planted_model``,
``generated_files``, ``train_data``, ``serve_client``), importable from every folder because pytest puts
this folder on ``sys.path``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBNET_CACHE", str(tmp_path_factory.mktemp("dbnet-cache")))
        yield


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """The planted model (tests/planted_model.py) as a ``.pt`` and a ``.onnx`` file."""
    from planted_model import planted_files

    return planted_files(tmp_path_factory.getbasetemp() / "planted")


@pytest.fixture
def one_thread():
    """torch on one thread for the test (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli_runner():
    """The one ``CliRunner`` of the test suite (``generated_files.runner``): ``cli_runner.invoke(app, [...])``."""
    from generated_files import runner

    return runner
