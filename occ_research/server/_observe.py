"""What an operator sees: Prometheus metrics (``GET /metrics``) and an optional access log line per request.

Metrics live in a registry of the app's own (not prometheus-client's global one), so several apps can run
in one process. With ``--workers N`` each worker process counts on its own and a scrape reaches one of
them: run one worker per port (or one process) where exact totals matter.

Labels take a few bounded values: the route (a known path or ``other``), the status, and the model's
upstream route (``gpt-*``, ``local``, ``unknown``), never a client's model name.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTES = frozenset({"/v1/chat/completions", "/v1/models", "/healthz", "/metrics"})
OUTCOMES = ("on", "off", "skipped-short", "skipped-kind", "failed", "over-budget")
access_log = logging.getLogger("occ_research.server.access")


@dataclass(slots=True)
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
    """The server's counters and histograms, in a registry of their own. Those counted per request are
    plain numbers (``LoopCounter``, ``LoopHistogram``) that this collector exports when scraped, in the
    same form as prometheus-client's own metrics: those take a lock and check their labels on each update,
    3% of a relayed request's instructions. Only the event loop counts them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = LoopCounter("occ_requests", "Requests answered", ("route", "status", "model"))
        self.prompt_tokens = LoopCounter(
            "occ_prompt_tokens",
            "Prompt tokens of compressed requests: as received (in), as forwarded (out), saved (in - out)",
            ("kind",),
            (("in",), ("out",), ("saved",)),
        )
        self.compressions = LoopCounter(
            "occ_compressions", "Compression outcomes", ("outcome",), [(o,) for o in OUTCOMES]
        )
        self.compression_seconds = LoopHistogram(
            "occ_compression_seconds",
            "Time compression took (abandoned ones: until abandoned)",
            (),
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.upstream_seconds = LoopHistogram(
            "occ_upstream_seconds",
            "Time from sending a request upstream to the upstream's response headers",
            ("upstream",),
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        )
        self.message_cache = LoopCounter(
            "occ_message_cache_lookups",
            "Lookups in the compression workers' memo of compressed messages (cache-stable mode), by outcome",
            ("outcome",),
            (("hit",), ("miss",)),
        )
        self.registry.register(self)
        # updated from other threads, or read when scraped: prometheus-client's own objects
        self.worker_restarts = Counter(
            "occ_compression_worker_restarts",
            "Compression workers replaced: killed for not stopping at a deadline, or found dead",
            registry=self.registry,
        )
        self.compression_waiting = Gauge(
            "occ_compression_waiting",
            "Compressions waiting for a free worker (bounded by compression_queue)",
            registry=self.registry,
        )

    def observe(self, record: RequestRecord) -> None:
        model = record.model or "none"
        self.requests.inc((record.route, str(record.status), model))
        if record.compression:
            self.compressions.inc((record.compression,))
        if record.original_tokens is not None:
            out = record.compressed_tokens if record.compressed_tokens is not None else record.original_tokens
            self.prompt_tokens.inc(("in",), record.original_tokens)
            self.prompt_tokens.inc(("out",), out)
            self.prompt_tokens.inc(("saved",), record.original_tokens - out)
        if record.cache_hits:
            self.message_cache.inc(("hit",), record.cache_hits)
        if record.cache_misses:
            self.message_cache.inc(("miss",), record.cache_misses)
        if record.compression_ms is not None:
            self.compression_seconds.observe((), record.compression_ms / 1000)
        if record.upstream_ms is not None:
            self.upstream_seconds.observe((model,), record.upstream_ms / 1000)

    def collect(self) -> Iterator[Metric]:
        for metric in (
            self.requests,
            self.prompt_tokens,
            self.compressions,
            self.compression_seconds,
            self.upstream_seconds,
            self.message_cache,
        ):
            yield metric.collect()


class LoopCounter:
    """A labelled counter as plain numbers (no lock: one thread counts), exported like prometheus-client's
    ``Counter``; ``labelled`` are the label values shown at 0 from the start."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], labelled: Iterable[tuple[str, ...]] = ()
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}
        for values in labelled:
            self.inc(values, 0)

    def inc(self, values: tuple[str, ...], amount: float = 1) -> None:
        if values in self.values:
            self.values[values] += amount
        else:
            self.values[values], self.created[values] = amount, time.time()

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in self.values.items():
            family.add_metric(values, value, created=self.created[values])
        return family


class LoopHistogram:
    """A labelled histogram as plain numbers (no lock: one thread counts), exported like prometheus-client's
    ``Histogram``."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.documentation, self.labels, self.bounds = name, documentation, labels, buckets
        self.counts: dict[tuple[str, ...], list[int]] = {}  # per bucket, not cumulative; the last: +Inf
        self.sums: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        counts = self.counts.get(values)
        if counts is None:
            counts = self.counts[values] = [0] * (len(self.bounds) + 1)
            self.sums[values], self.created[values] = 0.0, time.time()
        counts[bisect.bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound >= amount
        self.sums[values] += amount

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [*map(floatToGoString, self.bounds), "+Inf"]
        for values, counts in self.counts.items():
            family.add_metric(
                values, list(zip(bounds, itertools.accumulate(counts), strict=True)), self.sums[values]
            )
            labels = dict(zip(self.labels, values, strict=True))
            family.samples.append(Sample(f"{self.name}_created", labels, self.created[values]))
        return family


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
        # 32 random hex digits, like a uuid4 without the object around it
        record = RequestRecord(os.urandom(16).hex(), scope["method"], path if path in ROUTES else "other")
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
