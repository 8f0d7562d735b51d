"""``dbnet serve``: the detector as an HTTP service (``pip install 'dbnet[serve]'``: Starlette + uvicorn).

- ``POST /detect``: an image or a PDF (a multipart upload, field ``file``, or the raw request body)
  and per-request options (``dbcli.serve.options``) in, ``dbnet detect``'s JSON out (one entry per
  image or page); bad input is a 4xx with the CLI's one-line message.
- ``GET /health``: model loaded, version, queue; ``GET /``: a page to try it (``page.html``).

Modules, one job each: ``config`` (start-up settings), ``options`` (a request's options ->
``Settings``), ``uploads`` (the body into a per-request folder, size and megapixel limits),
``scheduler`` (the bounded queue and the one worker that runs the engine, micro-batching
concurrent requests), ``app`` (the Starlette routes), ``server`` (uvicorn: bind, drain on SIGTERM).

This package imports neither Starlette nor the model at import time: ``dbnet --help`` stays light.
"""

from __future__ import annotations

from dbcli.serve.config import ServeConfig

__all__ = ["ServeConfig"]
