"""Other model formats: ``export`` (ONNX, TorchScript) and ``paddleocr`` (PaddleOCR DB detectors -> dbnet
weights)."""
