"""A request's files -> the scheduler's ``Job``, and a finished job -> the HTTP status and JSON body.

The body is ``dbnet detect``'s document (one entry per image or PDF page, files named as uploaded)
with the model described by its weights' file NAME and a hash of their content, never the server's
path; messages speak HTTP (the query option's name, this server's limit), not the CLI's flags.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from dbcli.engine.pdf import pdf_pages
from dbcli.engine.records import Failure, ImageRecord
from dbcli.errors import DBNetError
from dbcli.imaging import UNKNOWN_SIZE_WORDS, check_file_pixels
from dbcli.outputs.writers import detect_json
from dbcli.serve.options import RequestOptions
from dbcli.serve.scheduler import Job
from dbcli.serve.uploads import Part, Upload, UploadError

BOMB_WORDS = "-megapixel limit"  # in the engine's message for an image over --max-megapixels
CLI_HINTS = [(re.compile(r"; --max-megapixels raises the limit"), "; that is this server's limit"),
             (re.compile(r" \(dbnet serve --[a-z-]+ raises it\)"), "")]


def http_terms(message: str) -> str:
    """A CLI message as an HTTP client should read it: ``--box-thresh`` -> ``box_thresh`` (the
    query name), the hints to raise a limit (the operator's, not the client's) -> this server's."""
    for pattern, words in CLI_HINTS:
        message = pattern.sub(words, message)
    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), message)


def weights_digest(path: str | Path) -> str:
    """The first 16 hex digits of the SHA-256 of the file at ``path`` ("" when it cannot be read)."""
    from dbcli.files import file_sha256

    try:
        return file_sha256(path, "weights file")[:16]
    except DBNetError:
        return ""


def public_info(info: dict) -> dict:
    """The model's description for clients: ``weights`` as the file's name, ``weights_sha256``
    (16 hex digits) instead of its path on the server."""
    public = dict(info)
    weights = str(info.get("weights", ""))
    if weights:
        public["weights"] = Path(weights).name
        public["weights_sha256"] = weights_digest(weights)
    return public


def _sources(part: Part, options: RequestOptions, max_pages: int) -> list:
    """A file's inputs (a PDF's pages, else the file), checked before they take a place in the queue.
    Raises ``UploadError`` (422 for a PDF that cannot be opened, 413 over a limit)."""
    if part.is_pdf:
        try:
            pages = list(pdf_pages(part.path, options.dpi))
        except DBNetError as exc:
            message = str(exc).replace(f"{part.path.parent}/", "")
            raise UploadError(415 if "pip install" in message else 422, message) from None
        if len(pages) > max_pages:
            raise UploadError(413, f"{part.name}: {len(pages)} pages, over this server's limit of "
                                   f"{max_pages} pages per request")
        return pages
    _check_header(part, options.settings.max_megapixels)
    return [part.path]


def make_job(upload: Upload, options: RequestOptions, max_pages: int) -> Job:
    """The job of every file of ``upload`` (pages of all its PDFs together at most ``max_pages``).
    Raises ``UploadError``."""
    sources: list = []
    for part in upload.parts:
        sources += _sources(part, options, max_pages - len(sources))
    return Job(sources, options.settings, crops=options.crops, keep_images=options.images)


def _check_header(part: Part, max_megapixels: float | None) -> None:
    """The engine's size check of an image file (``check_file_pixels``: from its header, whatever
    decodes it), before the upload takes a place in the queue: 413 over the limit, 415 for a format
    whose size cannot be read before decoding, 422 for a file that cannot be read. Raises ``UploadError``."""
    try:
        check_file_pixels(part.path, part.name, max_megapixels)
    except DBNetError as exc:
        message = str(exc)
        status = 413 if BOMB_WORDS in message else 415 if UNKNOWN_SIZE_WORDS in message else 422
        raise UploadError(status, http_terms(message)) from None


def data_url(image: np.ndarray, ext: str) -> str:
    """An RGB image (H x W x 3 uint8) as a ``data:image/...;base64,`` URL (``.jpg`` or ``.png``)."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, data = cv2.imencode(ext, np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise DBNetError(f"cannot encode a {ext} image")
    mime = "jpeg" if ext == ".jpg" else "png"
    return f"data:image/{mime};base64,{base64.b64encode(data.tobytes()).decode('ascii')}"


def no_result(upload: Upload, failures: list[Failure]) -> tuple[int, dict]:
    """The error answer when no input of the upload could be used: the first failure's message (file
    names as uploaded), 413 when it is the megapixel limit's, else 422."""
    message = http_terms(upload.public(failures[0].message)) if failures else f"{upload.name}: nothing to detect in"
    status = 413 if BOMB_WORDS in message else 422
    return status, {"error": message, "status": status}


def result_entry(result: ImageRecord, upload: Upload, options: RequestOptions) -> dict:
    """One image's entry of ``dbnet detect``'s document, its file named as uploaded; each detection's
    crop (PNG) and the image (JPEG) as data URLs when ``options`` ask for them."""
    entry = result.to_dict()
    entry["file"] = upload.public(entry["file"])
    if options.crops and result.crops is not None:
        for det, crop in zip(entry["detections"], result.crops):
            det["crop"] = data_url(crop, ".png")
    if options.images and result.image is not None:
        entry["image"] = data_url(result.image, ".jpg")
    return entry


def answer(info: dict, upload: Upload, options: RequestOptions, items: list) -> tuple[int, dict]:
    """The HTTP status and JSON body for a finished job: ``dbnet detect``'s document (``info``: the
    public model description) and ``warnings``, the lines the CLI would print (inputs skipped,
    notes); when no input could be used, the first one's error."""
    results = [item for item in items if isinstance(item, ImageRecord)]
    failures = [item for item in items if isinstance(item, Failure)]
    if not results:
        return no_result(upload, failures)
    entries = [result_entry(result, upload, options) for result in results]
    body = detect_json(info, options.settings.to_dict(), entries)
    warnings = [http_terms(upload.public(f.message)) for f in failures]
    warnings += [http_terms(upload.public(line)) for r in results for line in r.messages()]
    if warnings:
        body["warnings"] = warnings
    return 200, body
