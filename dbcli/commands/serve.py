"""``dbnet serve``: options in, ``dbcli.serve.server.serve`` out (the ``serve`` extra)."""

from __future__ import annotations

from typing import Optional

import typer

from dbcli.commands.common import dpi_opt, fail, options_from
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError


def limits(max_wait: float, max_connections: int, header_timeout: float, body_timeout: float, keep_alive: float,
           max_uploads_mb: float, max_files: int) -> dict:
    """The connection, time and upload limits as ``ServeConfig`` fields."""
    return dict(max_wait=max_wait, max_connections=max_connections, header_timeout=header_timeout,
                body_timeout=body_timeout, keep_alive=keep_alive, max_uploads_mb=max_uploads_mb, max_files=max_files)


@options_from(InferenceOptions, exclude=("max_megapixels",))
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Server processes (uvicorn --workers), each with its own model."),
    dpi: float = dpi_opt(),
    max_megapixels: float = typer.Option(50.0, help="Refuse (413) images and PDF pages of more million pixels."),
    max_upload_mb: float = typer.Option(50.0, help="Refuse (413) request bodies of more MB."),
    max_pages: int = typer.Option(100, min=1, help="Refuse (413) PDFs of more pages."),
    max_queue: int = typer.Option(32, min=1, help="Requests admitted at once (running or waiting); more get "
                                                  "503 with Retry-After."),
    max_batch: Optional[int] = typer.Option(None, min=1, show_default=False,
                                            help="Images from concurrent requests run in one engine call "
                                                 "(default: 8 on CUDA, 1 on a CPU, where it measured no gain)."),
    drain_timeout: float = typer.Option(30.0, min=0.0, help="On SIGTERM, seconds to let requests in flight finish "
                                                            "(those still waiting then get a 503)."),
    max_wait: float = typer.Option(10.0, min=0.0, help="Seconds a request may wait for the engine; one that would "
                                                       "wait longer gets 503 with Retry-After at once."),
    max_connections: int = typer.Option(512, min=1, help="Open connections at once; more get a plain 503."),
    header_timeout: float = typer.Option(10.0, min=0.1, help="Seconds for a request's head to arrive (idle and "
                                                             "slow connections are closed)."),
    body_timeout: float = typer.Option(60.0, min=0.1, help="Seconds for a request's whole body (else 408)."),
    keep_alive: float = typer.Option(5.0, min=1.0, help="Seconds an idle keep-alive connection stays open."),
    max_uploads_mb: float = typer.Option(200.0, help="MB all uploads in progress or admitted may hold together "
                                                     "(on disk and in memory); more get 503."),
    max_files: int = typer.Option(16, min=1, help="Files per request (each gets its own result entry)."),
    *,
    options: InferenceOptions,
) -> None:
    """Serve the detector over HTTP (pip install 'dbnet-cli[serve]'): POST /detect, GET /livez, /readyz,
    /health, /metrics, /docs, GET / (a page).

    POST /detect takes images or PDFs (multipart fields, a JSON body {"image": "<base64>", "options":
    {...}}, or the raw body) and the options of dbnet detect as query parameters or form fields
    (thresh, box_thresh, unclip_ratio, polygon, sort, short_side, max_side, max_candidates, dpi,
    exif, crops, text: each region's text), and answers with dbnet detect's JSON. The options here are
    the defaults of every request.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        fail("dbnet serve needs its extra: pip install 'dbnet-cli[serve]'")
    from dbcli.serve.config import ServeConfig
    from dbcli.serve.server import serve as run_server

    try:
        config = ServeConfig(inference=options, dpi=dpi, max_upload_mb=max_upload_mb,
                             max_megapixels=max_megapixels, max_pages=max_pages, max_queue=max_queue,
                             max_batch=max_batch, drain_timeout=drain_timeout, host=host, port=port, workers=workers,
                             **limits(max_wait, max_connections, header_timeout, body_timeout, keep_alive,
                                      max_uploads_mb, max_files))
        run_server(config)
    except DBNetError as exc:
        fail(str(exc))
