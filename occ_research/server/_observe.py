"""What an operator sees: Prometheus metrics (``GET /metrics``) and an optional access log line per request.

Metrics live in a registry of the app's own (not prometheus-client's global one), so several apps can run
in one process. With ``--workers N`` each worker process counts on its own and a scrape reaches one of
them: run one worker per port (or one process) where exact totals matter.

Labels take a few bounded values: the route (a known path or ``other``), the status, and the model's
upstream route (``gpt-*``, ``local``, ``unknown``), never a client's model name.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/healthz", "/metrics"})
OUTCOMES = ("on", "off", "skipped-short", "skipped-kind", "failed", "over-budget")
access_log = logging.getLogger("occ_research.server.access")


@dataclass
class RequestRecord:
    """One request as the metrics and the access log see it: numbers and bounded words, never a key or
    prompt text."""

    request_id: str
    method: str
    route: str
    status: int = 0
    model: str = ""  # the upstream route's label, not the client's string
    stream: bool = False
    compression: str = ""  # the x-occ-compression word
    original_tokens: int | None = None
    compressed_tokens: int | None = None
    compression_ms: float | None = None
    cache_hits: int | None = None  # lookups in the memo of compressed messages (cache-stable mode)
    cache_misses: int | None = None
    upstream_ms: float | None = None
    duration_ms: float = 0.0


class Metrics:
    """The server's counters and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("occ_requests", "Requests answered", ["route", "status", "model"], registry=r)
        self.prompt_tokens = Counter(
            "occ_prompt_tokens",
            "Prompt tokens of compressed requests: as received (in), as forwarded (out), saved (in - out)",
            ["kind"],
            registry=r,
        )
        self.compressions = Counter("occ_compressions", "Compression outcomes", ["outcome"], registry=r)
        self.compression_seconds = Histogram(
            "occ_compression_seconds",
            "Time compression took (abandoned ones: until abandoned)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "occ_upstream_seconds",
            "Time from sending a request upstream to the upstream's response headers",
            ["upstream"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self.message_cache = Counter(
            "occ_message_cache_lookups",
            "Lookups in the compression workers' memo of compressed messages (cache-stable mode), by outcome",
            ["outcome"],
            registry=r,
        )
        self.worker_restarts = Counter(
            "occ_compression_worker_restarts",
            "Compression workers replaced: killed for not stopping at a deadline, or found dead",
            registry=r,
        )
        self.compression_waiting = Gauge(
            "occ_compression_waiting",
            "Compressions waiting for a free worker (bounded by compression_queue)",
            registry=r,
        )
        for outcome in ("hit", "miss"):
            self.message_cache.labels(outcome)
        for kind in ("in", "out", "saved"):
            self.prompt_tokens.labels(kind)
        for outcome in OUTCOMES:
            self.compressions.labels(outcome)

    def observe(self, record: RequestRecord) -> None:
        self.requests.labels(record.route, str(record.status), record.model or "none").inc()
        if record.compression:
            self.compressions.labels(record.compression).inc()
        if record.original_tokens is not None:
            out = record.compressed_tokens if record.compressed_tokens is not None else record.original_tokens
            self.prompt_tokens.labels("in").inc(record.original_tokens)
            self.prompt_tokens.labels("out").inc(out)
            self.prompt_tokens.labels("saved").inc(record.original_tokens - out)
        if record.cache_hits:
            self.message_cache.labels("hit").inc(record.cache_hits)
        if record.cache_misses:
            self.message_cache.labels("miss").inc(record.cache_misses)
        if record.compression_ms is not None:
            self.compression_seconds.observe(record.compression_ms / 1000)
        if record.upstream_ms is not None:
            self.upstream_seconds.labels(record.model or "none").observe(record.upstream_ms / 1000)


class Observer:
    """ASGI middleware: gives each request an id (``x-request-id`` on the answer) and a ``RequestRecord``
    (``request.state.record``, filled in by the routes), then counts it and, if enabled, logs it."""

    def __init__(self, app: ASGIApp, log_requests: bool = False) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        record = RequestRecord(uuid.uuid4().hex, scope["method"], path if path in ROUTES else "other")
        state: dict[str, Any] = scope.setdefault("state", {})
        state["record"] = record
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", record.request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            record.status = record.status or 500
            record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
            metrics = state.get("metrics")
            if isinstance(metrics, Metrics):
                metrics.observe(record)
            if self.log_requests:
                access_log.info(json.dumps({k: v for k, v in asdict(record).items() if v is not None}))
