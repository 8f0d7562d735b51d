"""Run the service under uvicorn: bind (127.0.0.1 unless told otherwise), serve, and on SIGTERM or
Ctrl-C stop accepting, let the requests in flight finish (at most ``drain_timeout`` seconds), drain
the queue and exit."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

from dbcli.serve.config import CONFIG_ENV, ServeConfig


def connection_limit(config: ServeConfig) -> int:
    """Connections uvicorn accepts at once (more get its plain 503): well above the request slots,
    so that idle keep-alive connections and uploads in progress have room, yet bounded."""
    return 4 * config.max_queue + 16


def serve(config: ServeConfig) -> None:
    """Serve until SIGTERM / Ctrl-C. With one worker the model is loaded here first, so bad weights
    are a ``DBNetError`` (one line) before anything listens; with ``workers`` > 1, uvicorn starts
    that many processes, each loading its own model (config passed in ``$DBNET_SERVE_CONFIG``)."""
    import uvicorn

    from dbcli.cpu import tune_malloc

    tune_malloc()  # the worker runs the network over and over: keep its buffers mapped
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    common = dict(host=config.host, port=config.port, timeout_graceful_shutdown=int(config.drain_timeout),
                  limit_concurrency=connection_limit(config), lifespan="on", log_level="info")
    if config.workers > 1:
        os.environ[CONFIG_ENV] = config.to_env()
        uvicorn.run("dbcli.serve.app:app_from_env", factory=True, workers=config.workers, **common)  # type: ignore[arg-type]
        return
    from dbcli.serve.app import create_app, load_service

    service = load_service(config)
    with _exit_status_after_drain():
        uvicorn.run(create_app(config, service), **common)  # type: ignore[arg-type]


@contextlib.contextmanager
def _exit_status_after_drain() -> Iterator[None]:
    """uvicorn drains on SIGTERM / SIGINT, then raises the signal again under the handler it found:
    let that end the process with status 0 after SIGTERM (a clean, drained stop, as a scheduler
    expects) and 130 after Ctrl-C, instead of dying by the signal or printing a traceback."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0 if signum == signal.SIGTERM else 130)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
