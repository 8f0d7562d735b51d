"""dbnet: DBNet scene-text detection (Liao et al., AAAI 2020) as a library and a CLI."""

__version__ = "0.1.0"
