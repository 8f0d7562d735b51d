"""``dbnet serve``: the detector as an HTTP service (``pip install 'dbnet-cli[serve]'``: Starlette + uvicorn).

- ``POST /detect``: images or PDFs (multipart file fields, a JSON body with base64, or the raw
  request body) and per-request options (``dbcli.serve.options``) in, ``dbnet detect``'s JSON out
  (one entry per image or page); bad input is a 4xx with the CLI's one-line message in HTTP terms.
- ``GET /livez`` / ``/readyz`` (liveness, readiness), ``/health``, ``/metrics`` (Prometheus),
  ``/openapi.json`` / ``/docs``, ``/`` (a page to try it, ``page.html``).

Modules, one job each: ``config`` (start-up settings), ``options`` (a request's options ->
``Settings``), ``spool`` (where uploads live, their byte budget, stale folders), ``uploads`` (the
body into a per-request folder, within the limits), ``answers`` (files -> a job, a job -> the
answer), ``scheduler`` (the bounded queue, its deadline and drain, and the one worker that runs the
engine, micro-batching concurrent requests), ``metrics`` (the access log and ``/metrics``),
``openapi`` (the API's description), ``app`` (the Starlette routes), ``protocol`` (uvicorn's h11
with a header deadline), ``server`` (uvicorn: bind, limits, drain on SIGTERM).

This package imports neither Starlette nor the model at import time: ``dbnet --help`` stays light.
"""

from __future__ import annotations

from dbcli.serve.config import ServeConfig

__all__ = ["ServeConfig"]
