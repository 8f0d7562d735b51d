"""The Starlette application: ``POST /detect``, ``GET /livez`` / ``/readyz`` / ``/health``,
``GET /metrics``, ``GET /openapi.json`` / ``/docs``, ``GET /`` (the page).

``create_app(config)`` loads the model when the server starts (``dbcli.Detector``) and gives it to
one ``Scheduler``; ``app_from_env()`` is the same for ``uvicorn --factory`` (config in
``$DBNET_SERVE_CONFIG``). Every answer is JSON; an error is ``{"error": "<one line>", "status": N}``
with the CLI's message for the same file in HTTP terms (4xx), a 503 with ``Retry-After`` when the
server is busy or shutting down, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dbcli.backends.base import Model
from dbcli.engine.options import InferenceOptions
from dbcli.engine.settings import Settings
from dbcli.serve.answers import answer, http_terms, make_job, public_info
from dbcli.serve.config import ServeConfig
from dbcli.serve.metrics import AccessLog, Metrics
from dbcli.serve.openapi import docs_page, openapi_spec
from dbcli.serve.options import OptionError, RequestOptions, parse_options
from dbcli.serve.scheduler import Busy, Closed, Job, Scheduler
from dbcli.serve.spool import Spool
from dbcli.serve.uploads import Disconnected, Limits, Upload, UploadError, receive_upload
from dbcli.version import __version__

log = logging.getLogger("dbnet.serve")


@dataclass
class Service:
    """What the routes share: the config, the loaded model (``info``: its public description), the
    default options and settings, the queue, the uploads' spool and the metrics."""

    config: ServeConfig
    model: Model
    info: dict
    base_options: InferenceOptions
    base: Settings
    scheduler: Scheduler
    spool: Spool
    metrics: Metrics

    @property
    def limits(self) -> Limits:
        return Limits(self.config.max_upload_bytes, self.config.max_files, self.config.body_timeout)


def load_service(config: ServeConfig) -> Service:
    """Load the model and its default settings (``dbcli.engine.load.load``, as every command),
    start the worker, make the spool (removing stale folders of killed runs). Raises ``DBNetError``
    for weights that cannot be loaded or a bad default."""
    from dbcli.engine.load import load

    options = config.model_options
    model, settings = load(options)
    if model.note:  # (e.g. the ONNX cache could not be used: the export is kept in memory)
        log.warning("%s", model.note)
    max_batch = config.max_batch
    if max_batch is None:
        max_batch = 8 if str(model.info.get("device", "")).startswith("cuda") else 1
    scheduler = Scheduler(model, config.max_queue, max_batch, max_wait=config.max_wait)
    spool = Spool(config.max_uploads_bytes, config.spool)
    return Service(config, model, public_info(model.info), options, settings, scheduler, spool,
                   Metrics(scheduler.depth, lambda: spool.held))


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status, headers=headers)


def busy(request: Request, retry_after: int, reason: str, message: str, close: bool = False) -> JSONResponse:
    """A 503 with ``Retry-After``; ``reason`` labels it in the metrics; ``close``: and the connection
    is closed after it (the client retries on a new one, to another replica)."""
    request.state.rejected = reason
    headers = {"Retry-After": str(retry_after), **({"Connection": "close"} if close else {})}
    return error(503, f"{message}; retry in {retry_after} s", headers)


def draining(request: Request) -> JSONResponse:
    return busy(request, 2, "draining", "the server is shutting down", close=True)


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _finished(job: Job, request: Request) -> bool:
    """Wait for ``job``; False when the client went away first."""
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


async def _admit(request: Request, service: Service, upload: Upload, values: dict) -> tuple[Job, RequestOptions]:
    """The request's options and job, admitted to the queue. Raises ``OptionError``,
    ``UploadError``, ``Busy``, ``Closed``."""
    options = parse_options(values, service.model, service.config, service.base_options, service.base)
    job = await run_in_threadpool(make_job, upload, options, service.config.max_pages)
    service.scheduler.submit(job)
    return job, options


async def _refused(request: Request, service: Service, upload: Upload, values: dict
                   ) -> tuple[Job, RequestOptions] | Response:
    """``_admit``, its refusals as answers (the upload discarded)."""
    try:
        return await _admit(request, service, upload, values)
    except OptionError as exc:
        response: Response = error(400, http_terms(str(exc)))
    except UploadError as exc:
        response = error(exc.status, str(exc))
    except Busy as exc:
        response = busy(request, exc.retry_after, "queue", "the server is busy: every request slot is taken "
                        "or the wait would be too long")
    except Closed:
        response = draining(request)
    except BaseException:
        upload.discard()
        raise
    upload.discard()
    return response


async def _outcome(request: Request, service: Service, job: Job, upload: Upload, options: RequestOptions) -> Response:
    """Wait for the job, then its answer: the results, a 503 (it waited past ``max_wait``, or the
    drain ended first), or nothing for a client that went away."""
    if not await _finished(job, request):
        service.scheduler.cancel(job)
        log.info("%s: the client went away; its request was dropped", upload.name)
        return Response(status_code=400)
    request.state.queue_wait = job.queue_wait
    if job.started_at is not None:
        request.state.service_time = time.monotonic() - job.started_at
    exc = job.future.exception()
    if isinstance(exc, Busy):
        return busy(request, exc.retry_after, "max_wait", "the request waited longer than this server's "
                    f"max wait ({service.config.max_wait:g} s)")
    if isinstance(exc, Closed):
        return draining(request)
    items = job.future.result()  # (the engine's own crash, if any, is raised here: a 500)
    status, body = await run_in_threadpool(answer, service.info, upload, options, items)
    return JSONResponse(body, status)


def foreign_origin(request: Request) -> str | None:
    """Why a request sent by a web page of another site is refused (None when it is not one). A
    browser sends ``Origin`` with every cross-origin POST, and a ``text/plain`` or multipart form
    needs no CORS preflight: without this check any page the user opens could make their browser
    post to a server on localhost. Clients that are not browsers (curl, scripts) send no ``Origin``;
    the service's own page sends its own."""
    from urllib.parse import urlsplit

    origin = request.headers.get("origin")
    if origin is None:
        return None
    host = request.headers.get("host", "")
    netloc = urlsplit(origin).netloc if origin != "null" else ""
    if netloc and netloc.lower() == host.lower():
        return None
    return f"cross-origin request refused: Origin {origin} is not this server ({host or 'no Host'})"


async def detect(request: Request) -> Response:
    service: Service = request.app.state.service
    scheduler = service.scheduler
    refused = foreign_origin(request)
    if refused:
        return error(403, refused)
    if scheduler.closing:
        return draining(request)
    if scheduler.full():  # before the upload is read: a full server costs a client no transfer
        return busy(request, scheduler.retry_after(), "queue", "the server is busy: every request slot is taken "
                    "or the wait would be too long")
    try:
        upload, values = await receive_upload(request, service.limits, service.spool)
    except UploadError as exc:
        if exc.status == 503:
            return busy(request, 2, "uploads", str(exc).split(";")[0])
        return error(exc.status, str(exc))
    except Disconnected:
        return Response(status_code=400)  # nobody is listening
    admitted = await _refused(request, service, upload, values)
    if isinstance(admitted, Response):
        return admitted
    job, options = admitted
    job.future.add_done_callback(lambda _: upload.discard())  # once nothing of it runs any more
    return await _outcome(request, service, job, upload, options)


async def livez(request: Request) -> JSONResponse:
    """The process answers (liveness): always 200."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    """Ready for a request (readiness): the model loaded, not draining, the queue not full; else 503."""
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "loading"}, 503)
    scheduler = service.scheduler
    state = "draining" if scheduler.closing else "busy" if scheduler.full() else "ready"
    requests, inputs = scheduler.depth()
    return JSONResponse({"status": state, "requests": requests, "inputs": inputs}, 200 if state == "ready" else 503)


async def health(request: Request) -> JSONResponse:
    service: Service = request.app.state.service
    queue = service.scheduler.snapshot()
    config = service.config
    return JSONResponse({"status": "draining" if queue["closing"] else "ok", "model_loaded": True,
                         "version": __version__, "model": service.info,
                         "settings": service.base.to_dict(), "queue": queue,
                         "limits": {"max_upload_mb": config.max_upload_mb, "max_megapixels": config.max_megapixels,
                                    "max_pages": config.max_pages, "max_files": config.max_files,
                                    "max_wait_s": config.max_wait, "body_timeout_s": config.body_timeout}},
                        503 if queue["closing"] else 200)


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(service.metrics.exposition(), headers={"Content-Type": service.metrics.content_type})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_spec(__version__))


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(docs_page(openapi_spec(__version__)))


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(resources.files("dbcli.serve").joinpath("page.html").read_text(encoding="utf-8"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _crash(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return error(500, f"internal error ({exc.__class__.__name__}{': ' + text if text else ''})")


def on_stop_signal(action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` when SIGTERM or SIGINT arrives, before the handler already installed (uvicorn's,
    which stops accepting and waits for the requests in flight). Returns the undo. Does nothing off
    the main thread, or where no handler of Python's is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        old = signal.getsignal(sig)
        if not callable(old) or old is signal.default_int_handler:
            continue

        def handler(signum: int, frame: object, old: Callable = old) -> None:
            action()
            old(signum, frame)

        previous[sig] = old
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return undo


def create_app(config: ServeConfig, service: Service | None = None) -> Starlette:
    """The ASGI app of ``service`` (None: loaded when the server starts the app). On SIGTERM the
    queue drains: jobs not done within ``config.drain_timeout`` seconds get a 503; the uploads'
    folder is removed when the app stops."""
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loaded = service if service is not None else await run_in_threadpool(load_service, config)
        holder["service"] = app.state.service = loaded
        log.info("dbnet serve %s: model %s (sha256 %s) on %s", __version__, loaded.info.get("weights"),
                 loaded.info.get("weights_sha256"), loaded.info.get("device"))
        undo = on_stop_signal(lambda: loaded.scheduler.drain(config.drain_timeout))
        try:
            yield
        finally:
            undo()
            loaded.scheduler.drain(0)
            await run_in_threadpool(loaded.scheduler.close, 1.0)
            loaded.spool.remove()

    routes = [Route("/", page, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/livez", livez, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"]), Route("/openapi.json", openapi, methods=["GET"]),
              Route("/docs", docs, methods=["GET"]), Route("/detect", detect, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _crash})
    app.add_middleware(AccessLog, metrics=lambda: holder["service"].metrics if holder else None)
    return app


def app_from_env() -> Starlette:
    """``uvicorn --factory dbcli.serve.app:app_from_env``: the config from ``$DBNET_SERVE_CONFIG``. A bad
    config is one ``error:`` line on stderr and exit status 1, not a traceback inside uvicorn's."""
    import sys

    from dbcli.errors import DBNetError

    try:
        config = ServeConfig.from_env()
    except DBNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return create_app(config)
