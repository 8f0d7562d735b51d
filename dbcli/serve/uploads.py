"""A request's upload -> a file in a folder of its own, named as uploaded, within the size limit.

The engine then reads it as ``dbnet detect`` reads a file, so the decoding, the checks and the
one-line messages are the CLI's; the folder is left out of the names (``street_sign.jpg: truncated
image file ...``). The body is streamed to disk and counted as it arrives: an upload over the limit
is refused (413) when its ``Content-Length`` says so, else as soon as the limit is passed, never
held in memory.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from dbcli.errors import DBNetError

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
class Upload:
    """The uploaded file ``path`` in the request's own ``folder`` (removed by ``discard``), the
    ``name`` results and messages give it, and whether it is read as a PDF (by its name, as the CLI
    decides, or by its content)."""

    folder: Path
    path: Path
    name: str
    is_pdf: bool

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def public(self, text: str) -> str:
        """``text`` (a message or a result's ``file``) without the request's folder."""
        return text.replace(f"{self.folder}/", "")


def safe_name(name: str | None) -> str:
    """An uploaded file name as a plain file name: its last path part, characters other than
    letters, digits, ``._-`` and spaces replaced by ``_``, at most 100 characters (``upload`` when
    nothing is left)."""
    base = re.split(r"[\\/]", name or "")[-1].strip()
    base = re.sub(r"[^\w.\- ]", "_", base).lstrip(". ")[-100:]
    return base or FALLBACK_NAME


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"the upload is over this server's {limit / 1e6:g} MB limit "
                            "(dbnet serve --max-upload-mb raises it)")


def _limited(receive: Any, limit: int) -> Any:
    """``receive`` that raises ``UploadError`` 413 once more than ``limit`` body bytes came in."""
    total = 0

    async def wrapped() -> Any:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _too_large(limit)
        return message
    return wrapped


def _filename_from_disposition(header: str | None) -> str | None:
    match = re.search(r'filename="?([^";]+)"?', header or "")
    return match.group(1) if match else None


async def receive_upload(request: Request, limit: int, spool: str | None = None
                         ) -> tuple[Upload, dict[str, str]]:
    """Save the request's file (multipart field ``file``, or any file field, else the raw body) in a
    new folder under ``spool`` (None: the system's temp folder). Returns it and the request's
    options: query parameters, and the text fields of a multipart form. Raises ``UploadError`` (413
    over ``limit`` bytes, 400 for a form without a file or a malformed one), ``Disconnected``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    options = dict(request.query_params)
    folder = Path(tempfile.mkdtemp(prefix="dbnet-serve-", dir=spool))
    try:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            path, name = await _from_form(Request(request.scope, _limited(request.receive, limit)), folder, options)
        else:
            name = safe_name(options.pop("filename", None)
                             or _filename_from_disposition(request.headers.get("content-disposition")))
            if name == FALLBACK_NAME and "pdf" in content_type:
                name += ".pdf"
            path = folder / name
            written = 0
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > limit:
                        raise _too_large(limit)
                    f.write(chunk)
        with open(path, "rb") as f:
            head = f.read(1024)
        return Upload(folder, path, name, name.lower().endswith(".pdf") or PDF_SIGNATURE in head), options
    except ClientDisconnect:
        shutil.rmtree(folder, ignore_errors=True)
        raise Disconnected() from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


async def _from_form(request: Request, folder: Path, options: dict[str, str]) -> tuple[Path, str]:
    try:
        form = await request.form(max_files=1, max_fields=32)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", None) or str(exc)
        raise UploadError(400, f"malformed multipart form: {detail}") from None
    try:
        upload = form.get("file")
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not isinstance(upload, UploadFile):
            upload = files[0] if files else None
        for key, value in form.multi_items():
            if isinstance(value, str):
                options[key] = value
        if upload is None:
            raise UploadError(400, "no file in the form: send the image or PDF in the field 'file' "
                                   "(or as the request body)")
        name = safe_name(upload.filename)
        path = folder / name
        with open(path, "wb") as f:
            await run_in_threadpool(shutil.copyfileobj, upload.file, f, 1 << 20)
        return path, name
    finally:
        await form.close()
