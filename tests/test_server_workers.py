"""The compression workers: compression runs in processes of their own, within the request's budget; a
worker past its deadline is interrupted, one that does not stop is killed and replaced, one that dies is
replaced; the queue is bounded.

The server runs in uvicorn on loopback, driven by the openai SDK and httpx. Fakes: the paid upstream is the
echoing upstream of ``test_server.py``; the server's preset is BM25 with faults injected by a word in the
prompt (``FaultyBm25``, defined here: the worker processes import it from this module to unpickle it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from occ_research._presets import Preset
from occ_research.server import Route, Settings, _app, create_app
from occ_research.server._worker import Presets
from occ_research.strategies._rankers import Bm25Strategy
from occ_research.strategies._results import CompressionResult
from tests import test_server
from tests.test_server import LONG, THREADS

serve, upstream = test_server.serve, test_server.upstream  # the same fixtures

BUDGET_MS = 2000.0  # long enough for a real compression on a busy machine; the faults sleep far longer


@dataclass
class FaultyBm25(Bm25Strategy):
    """BM25, with a fault picked by a word in the prompt, in whichever process compresses it:
    ``FAULT-RAISE`` raises (naming the process), ``FAULT-SLEEP`` sleeps a minute (a long compression that a
    deadline can interrupt), ``FAULT-STUCK`` ignores interruptions for a minute (code stuck in C),
    ``FAULT-EXIT`` ends the worker process."""

    def compress(self, prompt: str | Sequence[Mapping[str, Any]], **options: Any) -> CompressionResult:
        text = json.dumps(prompt)
        if "FAULT-RAISE" in text:
            raise RuntimeError(f"internal detail sk-secret-123 in process {os.getpid()}")
        if "FAULT-SLEEP" in text:
            time.sleep(60)
        if "FAULT-STUCK" in text:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                try:
                    time.sleep(0.05)
                except BaseException:  # interrupted at the deadline: carries on regardless
                    continue
        if "FAULT-EXIT" in text:
            os._exit(3)
        return super().compress(prompt, **options)


def faulty_app(**settings: Any) -> Any:
    """An app whose default preset is ``FaultyBm25`` at rate 0.25."""
    preset = Preset("faulty", "BM25 with injected faults", FaultyBm25(), rate=0.25)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_app, "load_presets", lambda _settings: Presets(preset, {}))
        return create_app(Settings(min_prompt_tokens=200, compression_budget_ms=BUDGET_MS, **settings))


@pytest.fixture(scope="module")
def faulty(serve: Any, upstream: str) -> str:
    """One worker process, so each test knows which worker a request reaches."""
    return str(serve(faulty_app(routes=(Route("gpt-", f"{upstream}/v1"),), compression_workers=1)))


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("occ_research")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def prompt(fault: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{LONG} {fault}\n\nWhat is the capital?"}]


def ask(base: str, messages: list[dict[str, str]]) -> Any:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=120)
    return client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]


def forwarded(raw: Any) -> Any:
    return json.loads(raw.parse().choices[0].message.content)["messages"]


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
    return found[0] if found else 0.0


def wait_for(condition: Any, seconds: float = 120) -> bool:
    """Polls until ``condition()`` holds (a bound on waiting, not a timing assertion)."""
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.05)
    return bool(condition())


def test_compression_runs_in_a_worker_process_and_a_failure_forwards_the_original(
    faulty: str, server_log: list[logging.LogRecord]
) -> None:
    messages = prompt("FAULT-RAISE")
    raw = ask(faulty, messages)
    assert raw.headers["x-occ-compression"] == "failed"
    assert "secret" not in str(raw.headers) and "internal detail" not in str(raw.headers)
    assert forwarded(raw) == messages
    logged = " ".join(r.getMessage() for r in server_log)
    worker = int(logged.split("in process ")[1].split()[0])
    assert worker != os.getpid()  # compressed in another process than the server's
    assert ask(faulty, prompt()).headers["x-occ-compression"] == "on"  # the worker goes on


def test_a_compression_past_its_deadline_is_interrupted_and_gives_its_worker_back(faulty: str) -> None:
    restarts = metric(faulty, "occ_compression_worker_restarts_total")
    messages = prompt("FAULT-SLEEP")
    raw = ask(faulty, messages)
    assert raw.headers["x-occ-compression"] == "over-budget" and forwarded(raw) == messages
    # the only worker would sleep for a minute more; interrupted at the deadline, it compresses the next one
    raw = ask(faulty, prompt())
    assert raw.headers["x-occ-compression"] == "on" and int(raw.headers["x-occ-compressed-tokens"]) > 0
    assert metric(faulty, "occ_compression_worker_restarts_total") == restarts  # stopped, not killed


def test_a_worker_that_does_not_stop_is_killed_and_replaced(faulty: str) -> None:
    restarts = metric(faulty, "occ_compression_worker_restarts_total")
    raw = ask(faulty, prompt("FAULT-STUCK"))
    assert raw.headers["x-occ-compression"] == "over-budget"
    assert wait_for(lambda: metric(faulty, "occ_compression_worker_restarts_total") == restarts + 1)
    assert ask(faulty, prompt()).headers["x-occ-compression"] == "on"  # a new worker, warmed up


def test_a_worker_that_dies_is_replaced(faulty: str) -> None:
    restarts = metric(faulty, "occ_compression_worker_restarts_total")
    messages = prompt("FAULT-EXIT")
    raw = ask(faulty, messages)
    assert raw.headers["x-occ-compression"] == "failed" and forwarded(raw) == messages
    assert wait_for(lambda: metric(faulty, "occ_compression_worker_restarts_total") == restarts + 1)
    assert ask(faulty, prompt()).headers["x-occ-compression"] == "on"


def test_past_the_queue_bound_the_original_is_forwarded_at_once(
    serve: Any, upstream: str, server_log: list[logging.LogRecord]
) -> None:
    """One worker (a thread, so the test sees when its compression starts) and room for one waiting job."""
    release, started = threading.Event(), threading.Event()
    preset = Preset("blocking", "BM25 that waits for the test", BlockingBm25(), rate=0.25)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_app, "load_presets", lambda _settings: Presets(preset, {}))
        patch.setattr(BlockingBm25, "gates", (started, release))
        settings = Settings(
            routes=(Route("gpt-", f"{upstream}/v1"),),
            min_prompt_tokens=200,
            compression_budget_ms=60_000,
            compression_queue=1,
            **THREADS,
        )
        base = serve(create_app(settings))
        answers: list[str] = []

        def send() -> None:
            answers.append(ask(base, prompt("BLOCK")).headers["x-occ-compression"])

        senders = [threading.Thread(target=send) for _ in range(2)]
        senders[0].start()
        assert started.wait(60)  # the only worker is busy
        senders[1].start()
        assert wait_for(lambda: metric(base, "occ_compression_waiting") == 1)  # and one request waits
        raw = ask(base, prompt())
        assert raw.headers["x-occ-compression"] == "over-budget" and forwarded(raw) == prompt()
        assert any("queue is full" in r.getMessage() for r in server_log)
        release.set()
        for sender in senders:
            sender.join(60)
    assert answers == ["on", "on"]


@dataclass
class BlockingBm25(Bm25Strategy):
    """BM25 that, for a prompt with ``BLOCK``, says it started and waits until the test releases it (in
    the test's process: for a worker thread)."""

    gates: ClassVar[Any] = None  # (started, release), set by the test

    def compress(self, prompt: str | Sequence[Mapping[str, Any]], **options: Any) -> CompressionResult:
        if "BLOCK" in json.dumps(prompt) and self.gates is not None:
            started, release = self.gates
            started.set()
            release.wait(60)
        return super().compress(prompt, **options)
