"""Text recognition: read the text in the crops that detection cuts (torch-free: onnxruntime + numpy +
OpenCV).

``Recognizer()(crops)`` turns a list of ``(h, w, 3)`` uint8 RGB crops into one ``Reading(text, score)``
each. The shipped model is PP-OCRv6 small rec (PaddleOCR, Apache-2.0, from the ``rapidocr==3.10.0``
wheel) with PP-OCR's 0.6 MB text direction classifier; both sit in the top-level ``weights/`` folder,
pinned by SHA-256 (``weights/RECOGNITION.md`` is their model card).
"""

from dbcli.recognition.ctc import Reading, ctc_greedy_decode
from dbcli.recognition.direction import DirectionClassifier
from dbcli.recognition.model import CLASSIFIER, RECOGNIZER, ShippedModel, open_session, read_dictionary
from dbcli.recognition.recognizer import Recognizer

__all__ = ["CLASSIFIER", "RECOGNIZER", "DirectionClassifier", "Reading", "Recognizer", "ShippedModel",
           "ctc_greedy_decode", "open_session", "read_dictionary"]
