"""Datasets and training targets: the benchmark and custom readers (``datasets``, ``formats``, ``sample``),
augmentation (``augment``) and the shrink / threshold label maps (``labels``)."""
