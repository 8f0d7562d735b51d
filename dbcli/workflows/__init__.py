"""The command workflows: files in, files out, progress. ``detect`` (``dbnet detect``),
``visualize`` (``dbnet visualize``), ``inputs`` (command-line INPUTs -> images and PDF pages) and
``distributed`` (the torchrun share and merge). Each runs the engine (``dbcli.engine``) and writes
through ``dbcli.outputs``."""
