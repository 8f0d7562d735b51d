"""The model backends: ``base`` (the protocol: a normalised batch -> probability maps, and ``Model``,
a loaded backend with its stored defaults), ``torch_backend``, ``onnx_backend`` (torch-free),
``export`` and ``onnx_cache`` (a ``.pt`` file exported to ONNX once, verified, cached, sealed) in
``cache_folder`` (the private cache folder: never followed through links, evicted) and
``loading`` (``load_model``, ``pick_backend``: the one place that opens a weights file for inference).

Torch-free on import: ``--backend onnx`` runs without torch."""
