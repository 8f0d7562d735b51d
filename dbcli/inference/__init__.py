"""From images to detections: the options and settings, the one place that loads a model
(``loading``), the backends (``backend``, ``torch_backend``, ``onnx_backend``), the pipeline, and the
jobs over files (``detect_files``, ``visualize_files``) with their inputs, writers and drawings.

Torch-free on import: ``--backend onnx`` runs without torch."""
