"""What an operator sees: ``GET /metrics`` in the Prometheus text format, and the access log.

The server runs in uvicorn on loopback, driven by the openai SDK and httpx. Fake: the paid upstream is the
echoing upstream of ``test_server.py``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from occ_research.server import Route, Settings, create_app
from occ_research.server._observe import LoopCounter, LoopHistogram
from tests import test_server
from tests.test_chat import chat
from tests.test_server import KEY, LONG, THREADS, sdk

serve, upstream = test_server.serve, test_server.upstream  # the same fixtures

AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def proxy(serve: Any, upstream: str) -> str:
    settings = Settings(
        api_keys=(KEY,),
        preset="bm25-q25",
        routes=(Route("gpt-", f"{upstream}/v1"),),
        min_prompt_tokens=200,
        access_log=True,
        compression_workers=1,  # one worker process: its memo sees every request
    )
    return str(serve(create_app(settings)))


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", headers=AUTH).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def access_records() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("occ_research.server.access")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_metrics_count_requests_tokens_and_compression(proxy: str) -> None:
    assert httpx.get(f"{proxy}/metrics").status_code == 401  # guarded like the API
    before = samples(proxy)
    messages = [{"role": "user", "content": LONG + "\n\nWhat is the capital?"}]
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    sdk(proxy).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], extra_headers={"x-occ-compress": "off"}
    )
    httpx.post(f"{proxy}/v1/chat/completions", headers=AUTH, json={"model": "nowhere", "messages": messages})
    after = samples(proxy)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ok = {"route": "/v1/chat/completions", "status": "200", "model": "gpt-*"}
    assert delta("occ_requests_total", **ok) == 2
    assert delta("occ_requests_total", route="/v1/chat/completions", status="404", model="unknown") == 1
    assert delta("occ_compressions_total", outcome="on") == 1
    assert delta("occ_compressions_total", outcome="off") == 1
    original, compressed = (
        int(raw.headers["x-occ-original-tokens"]),
        int(raw.headers["x-occ-compressed-tokens"]),
    )
    assert delta("occ_prompt_tokens_total", kind="in") == original
    assert delta("occ_prompt_tokens_total", kind="out") == compressed
    assert delta("occ_prompt_tokens_total", kind="saved") == original - compressed > 0
    assert delta("occ_compression_seconds_count") == 1
    assert delta("occ_upstream_seconds_count", upstream="gpt-*") == 2


def test_metrics_count_the_message_memo_hits_and_misses(proxy: str) -> None:
    """Cache-stable mode remembers each compressed message (in the worker that compressed it; this server
    has one): a chat sent again is all hits."""
    messages = chat(5)
    messages[0] = {"role": "system", "content": f"You are analyst {uuid.uuid4().hex}."}  # never seen before
    counts = [samples(proxy)]
    for _ in range(2):
        raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        assert raw.headers["x-occ-compression"] == "on"
        counts.append(samples(proxy))

    def lookups(i: int, outcome: str) -> float:
        key = ("occ_message_cache_lookups_total", (("outcome", outcome),))
        return counts[i + 1].get(key, 0.0) - counts[i].get(key, 0.0)

    assert lookups(0, "miss") > 0 and lookups(0, "hit") == 0
    assert lookups(1, "hit") == lookups(0, "miss") and lookups(1, "miss") == 0


def test_each_app_has_its_own_registry(serve: Any, upstream: str) -> None:
    one = serve(create_app(Settings(routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS)))
    two = serve(create_app(Settings(routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS)))
    httpx.post(
        f"{one}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    )
    key = ("occ_requests_total", (("model", "gpt-*"), ("route", "/v1/chat/completions"), ("status", "200")))
    assert httpx.get(f"{one}/metrics").text.count("occ_requests_total{") >= 1
    counted = {
        base: {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)
            for s in f.samples
        }.get(key, 0.0)
        for base in (one, two)
    }
    assert counted == {one: 1.0, two: 0.0}


def test_access_log_is_one_json_line_per_request_without_keys_or_prompts(
    proxy: str, access_records: list[logging.LogRecord]
) -> None:
    secret_prompt = "The vault code is 4471-PURPLE. " * 60
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": secret_prompt}]
    )
    deadline = time.time() + 5  # the line is written once the response has been sent: wait for it
    while not access_records and time.time() < deadline:
        time.sleep(0.01)
    lines = [r.getMessage() for r in access_records]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["request_id"] == raw.headers["x-request-id"]
    assert entry["status"] == 200 and entry["model"] == "gpt-*" and entry["compression"] == "on"
    assert entry["original_tokens"] == int(raw.headers["x-occ-original-tokens"])
    assert entry["compression_ms"] >= 0 and entry["duration_ms"] >= 0
    assert KEY not in lines[0] and "PURPLE" not in lines[0] and "vault" not in lines[0]


def test_access_log_is_off_by_default(
    serve: Any, upstream: str, access_records: list[logging.LogRecord]
) -> None:
    base = serve(create_app(Settings(routes=(Route("gpt-", f"{upstream}/v1"),), **THREADS)))
    response = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 200 and response.headers["x-request-id"]
    assert access_records == []


def test_the_per_request_metrics_read_as_prometheus_clients_own() -> None:
    """They are kept as plain numbers; scraped, they read as prometheus-client's ``Counter`` and
    ``Histogram`` fed the same values (bucket bounds included: a value on a bound falls in its bucket)."""
    counter = LoopCounter("c", "A counter", ("kind",), [("start",)])
    histogram = LoopHistogram("h", "A histogram", ("upstream",), (0.1, 1.0))
    ours = CollectorRegistry()
    ours.register(Both(counter, histogram))
    reference = CollectorRegistry()
    reference_counter = Counter("c", "A counter", ["kind"], registry=reference)
    reference_counter.labels("start")
    reference_histogram = Histogram("h", "A histogram", ["upstream"], buckets=(0.1, 1.0), registry=reference)
    for kind, amount in [("a", 1), ("b", 2.5), ("a", 3)]:
        counter.inc((kind,), amount)
        reference_counter.labels(kind).inc(amount)
    for upstream, value in [("x", 0.05), ("x", 0.1), ("y", 0.5), ("x", 3.0)]:
        histogram.observe((upstream,), value)
        reference_histogram.labels(upstream).observe(value)

    def scraped(registry: CollectorRegistry) -> str:  # creation times differ by microseconds
        return re.sub(r"(_created\S*) \S+", r"\1 T", generate_latest(registry).decode())

    assert scraped(ours) == scraped(reference)


class Both:
    def __init__(self, *metrics: LoopCounter | LoopHistogram) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.collect()
