"""``dbnet serve``: options in, ``dbcli.serve.server.serve`` out (the ``serve`` extra)."""

from __future__ import annotations

from typing import Optional

import typer

from dbcli.commands.common import dpi_opt, fail, options_from
from dbcli.engine.options import InferenceOptions
from dbcli.errors import DBNetError


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
    drain_timeout: float = typer.Option(30.0, min=0.0, help="On SIGTERM, seconds to let requests in flight finish."),
    *,
    options: InferenceOptions,
) -> None:
    """Serve the detector over HTTP (pip install 'dbnet[serve]'): POST /detect, GET /health, GET / (a page).

    POST /detect takes an image or a PDF (multipart field "file", or the raw body) and the options of
    dbnet detect as query parameters or form fields (thresh, box_thresh, unclip_ratio, polygon, sort,
    short_side, max_side, max_candidates, dpi, exif, crops), and answers with dbnet detect's JSON.
    The options here are the defaults of every request.
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        fail("dbnet serve needs its extra: pip install 'dbnet[serve]'")
    from dbcli.serve.config import ServeConfig
    from dbcli.serve.server import serve as run_server

    try:
        config = ServeConfig(inference=options, dpi=dpi, max_upload_mb=max_upload_mb,
                             max_megapixels=max_megapixels, max_pages=max_pages, max_queue=max_queue,
                             max_batch=max_batch, drain_timeout=drain_timeout, host=host, port=port, workers=workers)
        run_server(config)
    except DBNetError as exc:
        fail(str(exc))
