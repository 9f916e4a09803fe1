"""The app factory: settings and presets checked when the app is made, then a lifespan that starts what
requests need before the first one arrives (the compression workers, which load the encodings and warm the
presets up; the upstream session; the metrics) and holds it in the lifespan state the routes read.

The upstream counts the compressed prompt, so ``usage.prompt_tokens`` is what the caller pays for.
Compression numbers travel in ``x-occ-*`` response headers. A request is never lost to compression: if it
fails or runs over its time budget, the original prompt is forwarded and ``x-occ-compression`` says why.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route as HttpRoute

from . import _routes as routes
from ._compression import Presets, load_presets, worker_config
from ._local import LocalUpstream
from ._observe import Metrics, Observer, access_log
from ._pool import CompressionPool
from ._settings import Settings
from ._state import ServerState


def create_app(settings: Settings | None = None) -> Starlette:
    """The app; settings default to ``Settings.load(OCC_SERVER_CONFIG)`` (see ``settings.py``). Raises an
    ``OCCError`` of one line for a problem with the settings or presets."""
    settings = settings or Settings.load(os.environ.get("OCC_SERVER_CONFIG"))
    presets = load_presets(settings)  # checked now, so a bad preset stops the start, not a request
    if settings.access_log and not access_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    if settings.access_log:
        access_log.setLevel(logging.INFO)
    return Starlette(
        routes=[
            HttpRoute("/v1/chat/completions", routes.chat_completions, methods=["POST"]),
            HttpRoute("/v1/models", routes.models, methods=["GET"]),
            HttpRoute("/metrics", routes.metrics, methods=["GET"]),
            HttpRoute("/healthz", routes.healthz, methods=["GET"]),
        ],
        middleware=[Middleware(Observer, log_requests=settings.access_log)],
        exception_handlers={HTTPException: routes.http_error, Exception: routes.server_error},
        lifespan=_lifespan(settings, presets),
    )


def _lifespan(settings: Settings, presets: Presets) -> Any:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        metrics = Metrics()
        pool = CompressionPool(
            worker_config(settings, presets),
            workers=settings.compression_workers,
            budget_s=settings.compression_budget_ms / 1000,
            queue=settings.compression_queue,
            processes=settings.compression_processes,
            on_restart=metrics.worker_restarts.inc,
        )
        metrics.compression_waiting.set_function(lambda: pool.waiting)
        # aiohttp, not httpx, for the upstream: it relayed 8x more requests/s here (benchmarks/load.py).
        # sock_read bounds the wait for each read, so a long stream is fine but a silent upstream is not.
        timeout = aiohttp.ClientTimeout(total=None, connect=settings.timeout, sock_read=settings.timeout)
        connector = aiohttp.TCPConnector(limit=512)
        try:
            await pool.start()  # the workers are warm before the first request
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
                local = LocalUpstream(settings.local_model)
                yield {
                    "server": ServerState(settings, presets, client, local, pool, metrics),
                    "metrics": metrics,
                }
        finally:
            await pool.close()

    return lifespan
