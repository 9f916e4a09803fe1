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
from starlette.routing import Route as HttpRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from . import _routes as routes
from ._compression import Presets, load_presets, worker_config
from ._local import LocalUpstream
from ._observe import Metrics, Observer, access_log
from ._pool import CompressionPool
from ._settings import Settings
from ._state import ServerState


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The app; settings default to ``Settings.load(OCC_SERVER_CONFIG)`` (see ``settings.py``). Raises an
    ``OCCError`` of one line for a problem with the settings or presets.

    Every request passes the ``Observer`` (request id, metrics, access log); ``POST /v1/chat/completions``
    then goes straight to its endpoint (``Shortcut``), everything else through Starlette's middleware and
    router. The lifespan is Starlette's."""
    settings = settings or Settings.load(os.environ.get("OCC_SERVER_CONFIG"))
    presets = load_presets(settings)  # checked now, so a bad preset stops the start, not a request
    if settings.access_log and not access_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    if settings.access_log:
        access_log.setLevel(logging.INFO)
    chat = routes.ChatCompletions()
    app = Starlette(
        routes=[
            HttpRoute(routes.CHAT_PATH, chat, methods=["POST"]),  # behind Shortcut: other methods get 405
            HttpRoute("/v1/models", routes.models, methods=["GET"]),
            HttpRoute("/metrics", routes.metrics, methods=["GET"]),
            HttpRoute("/healthz", routes.healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: routes.http_error, Exception: routes.server_error},
        lifespan=_lifespan(settings, presets),
    )
    return Observer(Shortcut(app, routes.CHAT_PATH, "POST", chat), log_requests=settings.access_log)


class Shortcut:
    """ASGI middleware: requests for one path and method go straight to their endpoint, past Starlette's
    middleware and router, which do nothing for it (its path has no parameters; it answers its own errors,
    see ``routes.ChatCompletions``) and cost 6% of a relayed request's instructions. Everything
    else goes the usual way: other paths and methods (405), and an app mounted under a root path."""

    def __init__(self, app: ASGIApp, path: str, method: str, endpoint: ASGIApp) -> None:
        self.app, self.path, self.method, self.endpoint = app, path, method, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == self.method
            and not scope.get("root_path")
        ):
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


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
