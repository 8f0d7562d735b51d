"""The one place that turns options into a ready model and its settings: ``load(options) -> (Model,
Settings)``, used by ``dbnet detect``, ``visualize``, ``eval``, ``dbnet serve`` and ``dbcli.Detector``
(as docTR's ``detection_predictor``).

This module must not import torch: ``--backend onnx`` runs without it.
"""

from __future__ import annotations

from dbcli.backends.base import Model
from dbcli.backends.loading import load_model
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import Settings, check_options, resolve_settings


def load(options: InferenceOptions = InferenceOptions(), *, maps: bool = False) -> tuple[Model, Settings]:
    """The backend ``options`` name (``dbcli.backends.loading.load_model``) and its engine settings
    (``dbcli.engine.settings.resolve_settings``). ``maps``: the threshold map is wanted too
    (``visualize --maps``: torch). With ``options.text`` the text recogniser is loaded too
    (``dbcli.engine.text.reader_for``). Raises ``DBNetError`` naming the file when the weights cannot be
    used, or for a setting out of range (checked first: no model is loaded for a bad option)."""
    check_options(options)
    model = load_model(options.weights, options.backend, options.device, options.precision, maps=maps)
    settings = resolve_settings(model, options)
    if settings.text:
        from dbcli.engine.text import reader_for

        reader_for(model)  # the recogniser loaded once, with the model (a damaged file is said now)
    return model, settings
