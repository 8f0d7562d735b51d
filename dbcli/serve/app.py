"""The Starlette application: ``POST /detect``, ``GET /health``, ``GET /`` (the page).

``create_app(config)`` loads the model when the server starts (``dbcli.Detector``) and gives it to
one ``Scheduler``; ``app_from_env()`` is the same for ``uvicorn --factory`` (config in
``$DBNET_SERVE_CONFIG``). Every answer is JSON; an error is ``{"error": "<one line>", "status": N}``
with the CLI's message for the same file (4xx), never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dbcli.backends.base import Model
from dbcli.engine.options import InferenceOptions
from dbcli.engine.pdf import pdf_pages
from dbcli.engine.records import Failure, ImageRecord
from dbcli.engine.settings import Settings
from dbcli.errors import DBNetError
from dbcli.imaging import check_pixels
from dbcli.outputs.writers import detect_json
from dbcli.serve.config import ServeConfig
from dbcli.serve.options import OptionError, RequestOptions, parse_options
from dbcli.serve.scheduler import Busy, Closed, Job, Scheduler
from dbcli.serve.uploads import Disconnected, Upload, UploadError, receive_upload
from dbcli.version import __version__

log = logging.getLogger("dbnet.serve")
BOMB_WORDS = "-megapixel limit"  # in the engine's message for an image over --max-megapixels


@dataclass
class Service:
    """What the routes share: the config, the loaded model, the default options and settings, the queue."""

    config: ServeConfig
    model: Model
    base_options: InferenceOptions
    base: Settings
    scheduler: Scheduler


def load_service(config: ServeConfig) -> Service:
    """Load the model and its default settings (``dbcli.engine.load.load``, as every command)
    and start the worker. Raises ``DBNetError`` for weights that cannot be loaded or a bad default."""
    from dbcli.engine.load import load

    options = config.model_options
    model, settings = load(options)
    max_batch = config.max_batch
    if max_batch is None:
        max_batch = 8 if str(model.info.get("device", "")).startswith("cuda") else 1
    return Service(config, model, options, settings, Scheduler(model, config.max_queue, max_batch))


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status, headers=headers)


def busy(retry_after: int, message: str = "the server is busy: every request slot is taken") -> JSONResponse:
    return error(503, f"{message}; retry in {retry_after} s", {"Retry-After": str(retry_after)})


def make_job(upload: Upload, options: RequestOptions, config: ServeConfig) -> Job:
    """The upload's inputs (a PDF's pages, else the image file), checked before they take a place in
    the queue: a PDF that cannot be opened (422) or has too many pages (413), an image whose header
    says it is over the megapixel limit (413). Raises ``UploadError``."""
    if upload.is_pdf:
        try:
            sources: list = list(pdf_pages(upload.path, options.dpi))
        except DBNetError as exc:
            status = 415 if "pip install" in str(exc) else 422
            raise UploadError(status, upload.public(str(exc))) from None
        if len(sources) > config.max_pages:
            raise UploadError(413, f"{upload.name}: {len(sources)} pages, over this server's limit of "
                                   f"{config.max_pages} pages per request (dbnet serve --max-pages)")
    else:
        _check_header(upload, options.settings.max_megapixels)
        sources = [upload.path]
    return Job(sources, options.settings, crops=options.crops, keep_images=options.images)


def _check_header(upload: Upload, max_megapixels: float | None) -> None:
    from PIL import Image

    try:
        with Image.open(upload.path) as img:
            size = img.size
    except Exception:  # not for Pillow: the engine decodes it (or says why not)
        return
    try:
        check_pixels(upload.name, size[0], size[1], max_megapixels)
    except DBNetError as exc:
        raise UploadError(413, str(exc)) from None


def _data_url(image: np.ndarray, ext: str) -> str:
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
    message = upload.public(failures[0].message) if failures else f"{upload.name}: nothing to detect in"
    status = 413 if BOMB_WORDS in message else 422
    return status, {"error": message, "status": status}


def result_entry(result: ImageRecord, upload: Upload, options: RequestOptions) -> dict:
    """One image's entry of ``dbnet detect``'s document, its file named as uploaded; each detection's
    crop (PNG) and the image (JPEG) as data URLs when ``options`` ask for them."""
    entry = result.to_dict()
    entry["file"] = upload.public(entry["file"])
    if options.crops and result.crops is not None:
        for det, crop in zip(entry["detections"], result.crops):
            det["crop"] = _data_url(crop, ".png")
    if options.images and result.image is not None:
        entry["image"] = _data_url(result.image, ".jpg")
    return entry


def warning_lines(upload: Upload, results: list[ImageRecord], failures: list[Failure]) -> list[str]:
    """The lines the CLI would print, file names as uploaded: the inputs skipped, then each result's
    notes."""
    warnings = [upload.public(f.message) for f in failures]
    warnings += [upload.public(line) for r in results for line in r.messages()]
    return warnings


def answer(service: Service, upload: Upload, options: RequestOptions, items: list) -> tuple[int, dict]:
    """The HTTP status and JSON body for a finished job: ``dbnet detect``'s document (file names
    as uploaded; crops and images as data URLs when asked for) and ``warnings``, the lines the CLI
    would print (inputs skipped, notes); when no input could be used, the first one's error."""
    results = [item for item in items if isinstance(item, ImageRecord)]
    failures = [item for item in items if isinstance(item, Failure)]
    if not results:
        return no_result(upload, failures)
    entries = [result_entry(result, upload, options) for result in results]
    body = detect_json(service.model.info, options.settings.to_dict(), entries)
    warnings = warning_lines(upload, results, failures)
    if warnings:
        body["warnings"] = warnings
    return 200, body


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _finished(job: Job, request: Request) -> bool:
    """Wait for ``job``; False (and the job cancelled) when the client went away first."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def wake(_: object) -> None:
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:  # the loop is closed (shutdown)
            pass

    job.future.add_done_callback(wake)
    waiter = asyncio.ensure_future(done.wait())
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        gone.cancel()
    return job.future.done()


async def detect(request: Request) -> Response:
    service: Service = request.app.state.service
    scheduler = service.scheduler
    if scheduler.full():  # before the upload is read: a full server costs a client no transfer
        return busy(scheduler.retry_after())
    try:
        upload, values = await receive_upload(request, service.config.max_upload_bytes)
    except UploadError as exc:
        return error(exc.status, str(exc))
    except Disconnected:
        return Response(status_code=400)  # nobody is listening
    try:
        options = parse_options(values, service.model, service.config, service.base_options, service.base)
        job = await run_in_threadpool(make_job, upload, options, service.config)
        scheduler.submit(job)
    except OptionError as exc:
        upload.discard()
        return error(400, str(exc))
    except UploadError as exc:
        upload.discard()
        return error(exc.status, str(exc))
    except Busy as exc:
        upload.discard()
        return busy(exc.retry_after)
    except Closed:
        upload.discard()
        return busy(1, "the server is shutting down")
    except BaseException:
        upload.discard()
        raise
    job.future.add_done_callback(lambda _: upload.discard())  # once nothing of it runs any more
    if not await _finished(job, request):
        scheduler.cancel(job)
        log.info("%s: the client went away; its request was dropped", upload.name)
        return Response(status_code=400)
    items = job.future.result()  # (the engine's own crash, if any, is raised here: a 500)
    status, body = await run_in_threadpool(answer, service, upload, options, items)
    return JSONResponse(body, status)


async def health(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    queue = service.scheduler.snapshot()
    return JSONResponse({"status": "draining" if queue["closing"] else "ok", "model_loaded": True,
                         "version": __version__, "model": service.model.info,
                         "settings": service.base.to_dict(), "queue": queue,
                         "limits": {"max_upload_mb": service.config.max_upload_mb,
                                    "max_megapixels": service.config.max_megapixels,
                                    "max_pages": service.config.max_pages}},
                        503 if queue["closing"] else 200)


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(resources.files("dbcli.serve").joinpath("page.html").read_text(encoding="utf-8"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return error(500, f"internal error ({exc.__class__.__name__}{': ' + text if text else ''})")


def create_app(config: ServeConfig, service: Service | None = None) -> Starlette:
    """The ASGI app of ``service`` (None: loaded when the server starts the app); the worker drains
    its queue when the server stops (at most ``config.drain_timeout`` seconds)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal service
        if service is None:
            service = await run_in_threadpool(load_service, config)
        app.state.service = service
        log.info("dbnet serve %s: model %s on %s", __version__, service.model.info.get("weights"),
                 service.model.info.get("device"))
        try:
            yield
        finally:
            await run_in_threadpool(service.scheduler.close, config.drain_timeout)

    routes = [Route("/", page, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/detect", detect, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: _http_error, Exception: _crash})


def app_from_env() -> Starlette:
    """``uvicorn --factory dbcli.serve.app:app_from_env``: the config from ``$DBNET_SERVE_CONFIG``."""
    return create_app(ServeConfig.from_env())
