"""The model backends: ``base`` (the protocol: a normalised batch -> probability maps, and ``Model``,
a loaded backend with its stored defaults), ``torch_backend``, ``onnx_backend`` (torch-free),
``onnx_export`` and ``onnx_cache`` (a ``.pt`` file exported to ONNX once, verified, cached) and
``loading`` (``load_model``, ``pick_backend``: the one place that opens a weights file for inference).

Torch-free on import: ``--backend onnx`` runs without torch."""
