"""LLM back ends. The OpenAI-compatible client is driven against the real local model where it matters
(strategies) and against httpx.MockTransport fakes only to inject faults a paid upstream cannot be made to
produce on demand (timeouts, 5xx, 429, malformed bodies); each fake says what it injects."""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from occ_research.llm import (
    CachedLLM,
    CallCache,
    ChatResponse,
    LLMResponseError,
    LLMTimeoutError,
    LLMUpstreamError,
    LocalLLM,
    LocalModelError,
    OpenAICompatibleLLM,
    make_llm,
)
from occ_research.llm._local import (
    LOADED_MODELS,
    RECENT_LOGPROBS,
    _score_chunk,
    embedded_f16_path,
    embedded_model_path,
)

HELLO = [{"role": "user", "content": "Say hello."}]


def completion(text: str = "hello") -> dict[str, object]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def client(
    handler: Callable[[httpx.Request], httpx.Response], **options: object
) -> tuple[OpenAICompatibleLLM, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    llm = OpenAICompatibleLLM(
        "m",
        "http://upstream.test/v1",
        api_key="k",
        backoff=0.0,
        transport=httpx.MockTransport(record),
        **options,
    )  # type: ignore[arg-type]
    return llm, seen


def test_parses_a_completion_and_sends_the_openai_body() -> None:
    llm, seen = client(lambda r: httpx.Response(200, json=completion("hi there")))
    answer = llm.chat(HELLO, max_tokens=5, temperature=0.0)
    assert answer == ChatResponse("hi there", "stop", 5, 1)
    body = json.loads(seen[0].content)
    assert body == {"model": "m", "messages": HELLO, "max_tokens": 5, "temperature": 0.0, "stream": False}
    assert seen[0].headers["authorization"] == "Bearer k"
    assert str(seen[0].url) == "http://upstream.test/v1/chat/completions"


def test_retries_server_errors_then_succeeds() -> None:
    # fault injected: two 500s before a good answer
    replies = iter(
        [
            httpx.Response(500, json={"error": {"message": "boom"}}),
            httpx.Response(503),
            httpx.Response(200, json=completion()),
        ]
    )
    llm, seen = client(lambda r: next(replies))
    assert llm.chat(HELLO).text == "hello"
    assert len(seen) == 3


def test_429_honours_retry_after() -> None:
    # fault injected: rate limited once, with Retry-After: 0
    replies = iter(
        [httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(200, json=completion())]
    )
    llm, seen = client(lambda r: next(replies))
    assert llm.chat(HELLO).text == "hello" and len(seen) == 2


def test_client_errors_are_not_retried() -> None:
    llm, seen = client(lambda r: httpx.Response(400, json={"error": {"message": "bad max_tokens"}}))
    with pytest.raises(LLMUpstreamError, match="bad max_tokens") as info:
        llm.chat(HELLO)
    assert info.value.status == 400 and len(seen) == 1


def test_timeouts_exhaust_retries() -> None:
    # fault injected: the upstream never answers in time
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    llm, seen = client(slow, max_retries=2)
    with pytest.raises(LLMTimeoutError):
        llm.chat(HELLO)
    assert len(seen) == 3


@pytest.mark.parametrize("body", [b"not json", b'{"choices": []}', b'{"choices": [{"message": null}]}'])
def test_malformed_bodies_raise_a_typed_error(body: bytes) -> None:
    # fault injected: a 200 whose body is not a chat completion
    llm, _ = client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(LLMResponseError):
        llm.chat(HELLO)


def test_unreachable_upstream() -> None:
    llm = OpenAICompatibleLLM("m", "http://127.0.0.1:9/v1", max_retries=1, backoff=0.0, timeout=2.0)
    with pytest.raises(LLMUpstreamError, match="unreachable"):
        llm.chat(HELLO)


def test_async_calls_respect_the_concurrency_bound() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=completion())

    async def run() -> list[ChatResponse]:
        llm = OpenAICompatibleLLM(
            "m", "http://upstream.test/v1", max_concurrency=3, async_transport=httpx.MockTransport(handler)
        )
        return await asyncio.gather(*(llm.achat(HELLO) for _ in range(12)))

    assert len(asyncio.run(run())) == 12
    assert peak == 3


def test_cache_answers_repeated_calls(tmp_path: Path) -> None:
    llm, seen = client(lambda r: httpx.Response(200, json=completion()))
    cached = CachedLLM(llm, CallCache(tmp_path / "c.sqlite"))
    cached.chat(HELLO, max_tokens=5)
    cached.chat(HELLO, max_tokens=5)
    assert len(seen) == 1
    cached.chat(HELLO, max_tokens=6)
    assert len(seen) == 2
    assert asyncio.run(cached.achat(HELLO, max_tokens=5)).text == "hello" and len(seen) == 2


def _write_entries(path: str, worker: int) -> None:
    cache = CallCache(path)
    for i in range(100):
        cache.put(f"{worker}-{i}", ChatResponse(f"answer {worker} {i}"))


def test_cache_survives_concurrent_writers(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    CallCache(path)
    processes = [
        multiprocessing.get_context("spawn").Process(target=_write_entries, args=(path, w)) for w in range(3)
    ]
    for p in processes:
        p.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda w: _write_entries(path, w), range(10, 14)))
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    cache = CallCache(path)
    assert len(cache) == 700
    assert cache.get("2-99") == ChatResponse("answer 2 99")


def test_local_model_chats_and_scores() -> None:
    llm = LocalLLM()
    answer = llm.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=12)
    assert answer.text.strip() and answer.completion_tokens <= 12
    text = "Paris is the capital of France. It has about two million inhabitants."
    spans = llm.token_logprobs(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(lp <= 0 for _, _, lp in spans)
    windowed = llm.token_logprobs(text * 8, window=32)
    assert windowed[-1][1] == len(text) * 8


def test_local_model_caches_clear_through_their_owners() -> None:
    llm = LocalLLM()
    text = "Paris is the capital of France."
    first = llm.token_logprobs(text)
    assert len(LOADED_MODELS) >= 1 and len(RECENT_LOGPROBS) >= 1
    LOADED_MODELS.clear()  # closes the llama.cpp models
    RECENT_LOGPROBS.clear()
    assert len(LOADED_MODELS) == 0 and len(RECENT_LOGPROBS) == 0
    again = llm.token_logprobs(text)  # loads the model again and scores afresh
    assert again is not first and [s[:2] for s in again] == [s[:2] for s in first]
    assert [s[2] for s in again] == pytest.approx([s[2] for s in first], abs=1e-4)


def test_local_model_file_is_verified(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="not found"):
        LocalLLM(tmp_path / "missing.gguf")
    with pytest.raises(LocalModelError, match="sha256"):
        LocalLLM(embedded_model_path(), sha256="0" * 64)


def test_the_embedded_model_runs_from_its_float16_form(tmp_path: Path) -> None:
    """The float16 copy is derived once, read back while its record matches, derived again when its bytes
    change, and scores text as the shipped Q4_1 file does (same weights; only llama.cpp's arithmetic differs)."""
    from llama_cpp import Llama

    path = embedded_f16_path(tmp_path)
    record = path.with_suffix(".json")
    written = path.stat().st_mtime_ns
    assert embedded_f16_path(tmp_path) == path and path.stat().st_mtime_ns == written  # read back
    middle = path.stat().st_size // 2
    with path.open("r+b") as handle:  # one flipped byte: the record no longer matches
        handle.seek(middle)
        byte = handle.read(1)
        handle.seek(middle)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert embedded_f16_path(tmp_path) == path and record.is_file()
    with path.open("rb") as handle:  # derived again: the byte is back
        handle.seek(middle)
        assert handle.read(1) == byte
    assert LocalLLM().path.name == LocalLLM().model == path.name  # answers cached for Q4_1 are not reused

    text = (
        "Paris is the capital and largest city of France, on the Seine. It has about two million inhabitants."
    )
    scores = []
    for model in (embedded_model_path(), path):
        llama = Llama(model_path=str(model), n_ctx=256, logits_all=True, verbose=False, seed=0)
        ids = llama.tokenize(text.encode())
        scores.append(_score_chunk(llama, ids[:1], ids[1:]))
        llama.close()
    assert scores[1] == pytest.approx(scores[0], abs=0.5)  # per token
    assert sum(scores[1]) == pytest.approx(sum(scores[0]), rel=0.02)


def test_make_llm() -> None:
    local = make_llm("local")
    assert isinstance(local, CachedLLM) and isinstance(local.llm, LocalLLM)
    remote = make_llm("my-model", base_url="http://127.0.0.1:8000/v1", cache=False)
    assert isinstance(remote, OpenAICompatibleLLM) and remote.base_url == "http://127.0.0.1:8000/v1"
