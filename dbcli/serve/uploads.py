"""A request's upload -> its files in a folder of its own, named as uploaded, within the limits.

The engine then reads them as ``dbnet detect`` reads files, so the decoding, the checks and the
one-line messages are the CLI's; the folder is left out of the names (``street_sign.jpg: truncated
image file ...``). Three ways in: a multipart form (every file field, one result entry each), a
JSON body ``{"image": "<base64>", "filename": ..., "options": {...}}`` (or ``"images": [{"image":
..., "filename": ...}, ...]``), or the raw body (one file). The body is counted as it arrives: over
the per-request limit it is refused (413) when its ``Content-Length`` says so, else as soon as the
limit is passed; over the spool's budget of bytes for all uploads together, a 503; not complete
within ``body_timeout`` seconds, a 408.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from dbcli.errors import DBNetError
from dbcli.serve.spool import Spool

PDF_SIGNATURE = b"%PDF-"
FALLBACK_NAME = "upload"


class UploadError(DBNetError):
    """A request that cannot be used as it is; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Disconnected(Exception):
    """The client went away before its upload was complete."""


@dataclass
class Part:
    """One uploaded file: its ``path`` in the request's folder, the ``name`` results and messages
    give it, and whether it is read as a PDF (by its name, as the CLI decides, or by its content)."""

    path: Path
    name: str
    is_pdf: bool


@dataclass
class Upload:
    """A request's files (``parts``, in the order sent) in its own ``folder``; ``discard`` removes
    the folder and gives its bytes back to the spool's budget (once)."""

    folder: Path
    parts: list[Part]
    spool: Spool | None = None
    held: int = 0  # bytes counted against the spool's budget
    discarded: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """The request's name in messages: its files' names, joined."""
        return ", ".join(p.name for p in self.parts) or FALLBACK_NAME

    def discard(self) -> None:
        if self.discarded:
            return
        self.discarded = True
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.spool is not None:
            self.spool.release(self.held)

    def public(self, text: str) -> str:
        """``text`` (a message or a result's ``file``) without the request's folder."""
        return text.replace(f"{self.folder}/", "")


@dataclass(frozen=True)
class Limits:
    """What one request may send: ``max_bytes`` of body, ``max_files`` files, within
    ``body_timeout`` seconds (None: no limit)."""

    max_bytes: int
    max_files: int = 16
    body_timeout: float | None = 60.0


def safe_name(name: str | None) -> str:
    """An uploaded file name as a plain file name: its last path part, characters other than
    letters, digits, ``._-`` and spaces replaced by ``_``, at most 100 characters (``upload`` when
    nothing is left)."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^\w.\- ]", "_", base).lstrip(". ")[-100:]
    return base or FALLBACK_NAME


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"the upload is over this server's {limit / 1e6:g} MB limit per request")


def _no_room() -> UploadError:
    return UploadError(503, "the server holds as many uploads as it can take; retry in 2 s")


class _Counter:
    """Counts a request's body bytes against its limit and the spool's budget (reserving them as
    they come, past what its ``Content-Length`` reserved)."""

    def __init__(self, limit: int, spool: Spool | None, upload: Upload):
        self.limit, self.spool, self.upload, self.total = limit, spool, upload, 0

    def add(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise _too_large(self.limit)
        self.hold(self.total)

    def hold(self, n: int) -> None:
        more = n - self.upload.held
        if more > 0 and self.spool is not None:
            if not self.spool.reserve(more):
                raise _no_room()
            self.upload.held += more
        elif more > 0:
            self.upload.held += more

    def receive(self, receive: Any) -> Any:
        async def wrapped() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.add(len(message.get("body", b"")))
            return message
        return wrapped


def _filename_from_disposition(header: str | None) -> str | None:
    match = re.search(r'filename="?([^";]+)"?', header or "")
    return match.group(1) if match else None


def _part(folder: Path, name: str, taken: set[str]) -> Path:
    """A path for ``name`` in ``folder`` not used by an earlier file of the request."""
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{stem}-{k}{dot}{ext}" if dot else f"{name}-{k}"
    taken.add(candidate)
    return folder / candidate


def _finish(path: Path) -> Part:
    with open(path, "rb") as f:
        head = f.read(1024)
    return Part(path, path.name, path.name.lower().endswith(".pdf") or PDF_SIGNATURE in head)


async def receive_upload(request: Request, limits: Limits, spool: Spool | None = None
                         ) -> tuple[Upload, dict[str, str]]:
    """Save the request's files in a new folder of ``spool`` (None: the system's temp folder).
    Returns them and the request's options: query parameters, then a form's text fields or a JSON
    body's ``options``. Raises ``UploadError`` (413 over ``limits.max_bytes``, 503 over the spool's
    budget, 408 past ``limits.body_timeout``, 400 for a malformed form or JSON, or none of its
    files), ``Disconnected``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits.max_bytes)
    options = dict(request.query_params)
    folder = spool.new_folder() if spool is not None else Path(tempfile.mkdtemp(prefix="dbnet-serve-"))
    upload = Upload(folder, [], spool)
    counter = _Counter(limits.max_bytes, spool, upload)
    try:
        if declared.isdigit():
            counter.hold(int(declared))
        counted = Request(request.scope, counter.receive(request.receive))
        upload.parts = await asyncio.wait_for(_read(counted, folder, options, limits), limits.body_timeout)
        if not upload.parts:
            raise UploadError(400, "no file in the request: send the image or PDF in the form field "
                                   "'file', as a JSON body {\"image\": \"<base64>\"} or as the request body")
        return upload, options
    except ClientDisconnect:
        upload.discard()
        raise Disconnected() from None
    except asyncio.TimeoutError:
        upload.discard()
        raise UploadError(408, f"the upload did not arrive within {limits.body_timeout:g} s") from None
    except BaseException:
        upload.discard()
        raise


async def _read(request: Request, folder: Path, options: dict[str, str], limits: Limits) -> list[Part]:
    """The body's files saved in ``folder`` by its content type; its options added to ``options``."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _from_form(request, folder, options, limits.max_files)
    if content_type.startswith("application/json"):
        return await _from_json(request, folder, options, limits.max_files)
    name = safe_name(options.pop("filename", None)
                     or _filename_from_disposition(request.headers.get("content-disposition")))
    if name == FALLBACK_NAME and "pdf" in content_type:
        name += ".pdf"
    path = folder / name
    with open(path, "wb") as f:
        async for chunk in request.stream():
            f.write(chunk)
    return [_finish(path)]


def _json_files(data: Any, max_files: int) -> list[tuple[str | None, bytes]]:
    """``(filename, bytes)`` of a JSON body's ``image`` or ``images``. Raises ``UploadError`` 400."""
    if not isinstance(data, dict):
        raise UploadError(400, "the JSON body must be an object: {\"image\": \"<base64>\", \"options\": {...}}")
    items = data.get("images")
    if items is None:
        items = [{"image": data.get("image"), "filename": data.get("filename")}]
    if not isinstance(items, list) or not 0 < len(items) <= max_files:
        raise UploadError(400, f"images: expected a list of 1 to {max_files} objects")
    files = []
    for k, item in enumerate(items):
        text = item.get("image") if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise UploadError(400, f"image{'' if len(items) == 1 else f' {k + 1}'}: expected a base64 string")
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        try:
            files.append((item.get("filename"), base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise UploadError(400, f"image{'' if len(items) == 1 else f' {k + 1}'}: not valid base64") from None
    return files


async def _from_json(request: Request, folder: Path, options: dict[str, str], max_files: int) -> list[Part]:
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UploadError(400, f"the body is not valid JSON ({exc})") from None
    given = data.get("options", {}) if isinstance(data, dict) else {}
    if not isinstance(given, dict):
        raise UploadError(400, "options: expected an object of option names and values")
    for key, value in given.items():
        options[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    taken: set[str] = set()
    parts = []
    for filename, content in _json_files(data, max_files):
        path = _part(folder, safe_name(filename), taken)
        path.write_bytes(content)
        parts.append(_finish(path))
    return parts


def _root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain ``exc`` ends (the parser's own reason, under Starlette's)."""
    while (earlier := exc.__cause__ or exc.__context__) is not None:
        exc = earlier
    return exc


async def _from_form(request: Request, folder: Path, options: dict[str, str], max_files: int) -> list[Part]:
    try:
        form = await request.form(max_files=max_files, max_fields=32)
    except (MultiPartException, HTTPException) as exc:
        detail = str(getattr(exc, "message", None) or getattr(exc, "detail", None) or exc).rstrip(".")
        root = _root_cause(exc)
        cause = str(root).splitlines()[0][:200] if root is not exc and str(root) else ""
        if "header size" in cause:
            cause += ": a part's headers (its file name) over 4 KB"
        raise UploadError(400, f"malformed multipart form: {detail}{f' ({cause})' if cause else ''}") from None
    try:
        taken: set[str] = set()
        parts = []
        for key, value in form.multi_items():
            if isinstance(value, str):
                options[key] = value
                continue
            path = _part(folder, safe_name(value.filename), taken)
            with open(path, "wb") as f:
                await run_in_threadpool(shutil.copyfileobj, value.file, f, 1 << 20)
            parts.append(_finish(path))
        return parts
    finally:
        await form.close()
