"""Scoring: the ICDAR 2015 IoU protocol (``metrics``), a model or a predictions file on a dataset
split (``scoring``), threshold sweeps (``sweep``), and ``dbnet eval``'s run (``evaluate_dataset``)."""
