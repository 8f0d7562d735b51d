"""The engine: image + backend + settings -> records, shared by every command, the API and the
service. ``options`` (what a caller asks for) -> ``load`` (the backend from ``dbcli.backends``, and
its ``settings`` resolved against the weights file) -> ``pipeline`` (``sources`` decode images and
PDF pages, ``scale_policy`` and ``tiling`` pick the network input, ``dbcli.postprocess`` decodes the
maps) -> ``records`` (the one internal record) -> ``result`` (``ImageResult``, the one type users
see). Detection now; recognition slots in as another stage.

Torch-free on import: ``--backend onnx`` runs without torch."""
