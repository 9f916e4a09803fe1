"""Upstream faults keep their meaning, and requests are refused before any work is spent on them.

The proxy runs in uvicorn on loopback and is driven by the official openai SDK and httpx. Fakes: the paid
upstream is the fault-injecting upstream of ``test_server.py`` (the model name picks the fault), and one
test blocks the BM25 ranker to see what the server does while a compression runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from occ_research.server import Route, Settings, _routes, create_app
from occ_research.strategies._rankers import Bm25Strategy
from tests import test_server
from tests.test_server import KEY, LONG, THREADS, UPSTREAM_EVENTS, sdk

serve, upstream = test_server.serve, test_server.upstream  # the same fixtures

UPSTREAM_KEY = "sk-upstream-Zq7x9Kd2Lm4Np6Rt8Vw"
JSON_AUTH = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def proxy(serve: Any, upstream: str) -> str:
    routes = (Route("fault-", f"{upstream}/v1", "UPSTREAM_KEY"), Route("gpt-", f"{upstream}/v1"))
    settings = Settings(
        api_keys=(KEY,),
        preset="bm25-q25",
        routes=routes,
        min_prompt_tokens=200,
        timeout=5.0,
        keys={"UPSTREAM_KEY": UPSTREAM_KEY},
        **THREADS,  # in this process: a test records what the ranker does
    )
    return str(serve(create_app(settings)))


def wait_for(condition: Any, seconds: float = 10) -> None:
    """Polls until ``condition()`` holds (a bound on waiting, not a timing assertion)."""
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("model", ["fault-429", "fault-429-html"])
def test_429_keeps_its_status_and_retry_headers_whatever_the_body(proxy: str, model: str) -> None:
    UPSTREAM_EVENTS.clear()
    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key=KEY, max_retries=1, timeout=30)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    headers = raised.value.response.headers
    assert raised.value.status_code == 429
    assert headers["retry-after"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert UPSTREAM_EVENTS == ["429", "429"]  # the SDK's retry logic saw a retryable answer
    error = raised.value.body
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("model", ["fault-401", "fault-403"])
def test_upstream_refusing_our_credentials_is_a_502_without_the_key(proxy: str, model: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/chat/completions",
        headers=JSON_AUTH,
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert UPSTREAM_KEY not in response.text and "Zq7x9" not in response.text


def test_relayed_upstream_messages_are_redacted(proxy: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(proxy).chat.completions.create(
            model="fault-400-key", messages=[{"role": "user", "content": "Hi"}]
        )
    message = raised.value.message
    assert "Incorrect API key provided" in message and "[redacted]" in message
    assert "Zq7x9" not in str(raised.value.body) and "Zq7x9" not in raised.value.response.text


def test_a_stream_cut_mid_event_ends_with_an_error_event_the_sdk_reads(proxy: str) -> None:
    stream = sdk(proxy).chat.completions.create(
        model="fault-cut", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="broke off"):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hel"]  # the partial event was never relayed


def test_a_stream_without_done_ends_with_an_error_event(proxy: str) -> None:
    stream = sdk(proxy).chat.completions.create(
        model="fault-nodone", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match=r"before data: \[DONE\]"):
        list(stream)
    with httpx.stream(
        "POST",
        f"{proxy}/v1/chat/completions",
        headers=JSON_AUTH,
        json={"model": "fault-nodone", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
    ) as response:
        text = "".join(response.iter_text())
    events = [e for e in text.split("\n\n") if e]
    assert json.loads(events[-2][6:])["error"]["code"] == "upstream_stream_incomplete"
    assert events[-1] == "data: [DONE]"


def test_a_client_disconnect_cancels_a_non_streaming_upstream_request(proxy: str) -> None:
    UPSTREAM_EVENTS.clear()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{proxy}/v1/chat/completions",
            headers=JSON_AUTH,
            json={"model": "fault-hang", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=0.5,
        )
    wait_for(lambda: UPSTREAM_EVENTS)
    assert UPSTREAM_EVENTS == ["disconnected"]


def test_unknown_models_and_routes_are_refused_before_any_compression(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injected: the ranker records that it ran."""
    calls: list[int] = []
    real = Bm25Strategy._score

    def recording(self: Bm25Strategy, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Bm25Strategy, "_score", recording)
    long = {"messages": [{"role": "user", "content": LONG + "\n\nWhat is the capital?"}]}
    response = httpx.post(
        f"{proxy}/v1/chat/completions", headers=JSON_AUTH, json={"model": "nowhere", **long}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    response = httpx.post(f"{proxy}/v1/chat/complete", headers=JSON_AUTH, json={"model": "gpt-4o", **long})
    assert response.status_code == 404
    assert calls == []
    raw = sdk(proxy).chat.completions.with_raw_response.create(model="gpt-4o", **long)  # type: ignore[arg-type]
    assert raw.headers["x-occ-compression"] == "on" and calls


def test_405_says_which_methods_are_allowed(proxy: str) -> None:
    response = httpx.get(f"{proxy}/v1/chat/completions", headers=JSON_AUTH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "405"


@pytest.fixture
def blocked_ranker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Fault injected, once called: BM25 scoring waits until the test releases it (a long compression)."""
    release, calls = threading.Event(), []
    real = Bm25Strategy._score

    def blocked(self: Bm25Strategy, *args: Any, **kwargs: Any) -> Any:
        calls.append("started")
        release.wait(30)
        try:
            return real(self, *args, **kwargs)
        finally:
            calls.append("finished")

    def block() -> tuple[threading.Event, list[str]]:
        monkeypatch.setattr(Bm25Strategy, "_score", blocked)
        return release, calls

    yield block
    release.set()


def test_compression_over_budget_forwards_the_original_and_bounds_abandoned_work(
    serve: Any, upstream: str, blocked_ranker: Any
) -> None:
    settings = Settings(
        preset="bm25-q25",
        routes=(Route("gpt-", f"{upstream}/v1"),),
        min_prompt_tokens=200,
        compression_budget_ms=500,
        **THREADS,  # one worker thread: it cannot be interrupted, so abandoned work runs to its end
    )
    base = serve(create_app(settings))
    release, calls = blocked_ranker()  # after the start: the warm-up compresses too
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": LONG + "\n\nWhat is the capital?"}]
    for _ in range(3):  # the first holds the only thread; the next two wait for it, then give up
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        assert raw.headers["x-occ-compression"] == "over-budget"
        assert json.loads(raw.parse().choices[0].message.content)["messages"] == messages
    assert calls == ["started"]  # one abandoned compression runs; the queued ones never start
    release.set()
    wait_for(lambda: "finished" in calls)  # the abandoned compression gives its thread back
    assert calls == ["started", "finished"]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert raw.headers["x-occ-compression"] == "on"


def test_an_unexpected_error_is_a_500_that_tells_nothing(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injected: a check in the chat route raises. The route answers it itself (it runs past
    Starlette's middleware): OpenAI's error shape, a request id, no word of the exception."""

    def broken(*args: Any) -> Any:
        raise RuntimeError(f"internal detail {UPSTREAM_KEY}")

    monkeypatch.setattr(_routes, "read_control", broken)
    response = httpx.post(
        f"{proxy}/v1/chat/completions",
        headers=JSON_AUTH,
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 500 and response.headers["x-request-id"]
    assert response.json() == {
        "error": {"message": "internal error", "type": "server_error", "param": None, "code": None}
    }
    assert "internal detail" not in response.text and UPSTREAM_KEY not in response.text


def test_of_a_repeated_header_the_first_counts(proxy: str) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    for first, second, status in [(KEY, "wrong", 200), ("wrong", KEY, 401)]:
        headers = [
            ("authorization", f"Bearer {first}"),
            ("authorization", f"Bearer {second}"),
            ("content-type", "application/json"),
        ]
        response = httpx.post(f"{proxy}/v1/chat/completions", headers=headers, json=body)
        assert response.status_code == status
