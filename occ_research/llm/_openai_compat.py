"""A chat client for any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..exceptions import LLMError, LLMResponseError, LLMTimeoutError, LLMUpstreamError
from ._base import LLM, ChatResponse

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAICompatibleLLM(LLM):
    """``POST {base_url}/chat/completions`` over httpx, with retries and bounded concurrency.

    The key comes from ``api_key`` or the environment variable ``api_key_env`` (none for local servers).
    Retries: on 408/409/429/5xx, timeouts and connection errors, up to ``max_retries`` times with
    exponential backoff and jitter, honouring ``Retry-After``. At most ``max_concurrency`` calls run at once
    per client, sync and async alike.
    """

    backend = "openai-compatible"

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_concurrency: int = 8,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.max_retries = max_retries
        self.backoff = backoff
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self._async_client = httpx.AsyncClient(timeout=timeout, headers=headers, transport=async_transport)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._async_slots = asyncio.Semaphore(max_concurrency)

    def _body(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "messages": list(messages), **params, "stream": False}

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                return min(float(str(retry_after)), 30.0)
            except ValueError:
                pass
        return float(self.backoff * 2.0**attempt * (0.5 + random.random() / 2))

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        body = self._body(messages, params)
        for attempt in range(self.max_retries + 1):
            response, failure = None, None
            try:
                with self._slots:
                    response = self._client.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.HTTPError as exc:
                failure = exc
            outcome = self._judge(response, failure)
            if isinstance(outcome, ChatResponse):
                return outcome
            if attempt == self.max_retries or not _retryable(outcome):
                raise outcome
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    async def achat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        body = self._body(messages, params)
        for attempt in range(self.max_retries + 1):
            response, failure = None, None
            try:
                async with self._async_slots:
                    response = await self._async_client.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.HTTPError as exc:
                failure = exc
            outcome = self._judge(response, failure)
            if isinstance(outcome, ChatResponse):
                return outcome
            if attempt == self.max_retries or not _retryable(outcome):
                raise outcome
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    def _judge(
        self, response: httpx.Response | None, failure: httpx.HTTPError | None
    ) -> ChatResponse | LLMError:
        if isinstance(failure, httpx.TimeoutException):
            return LLMTimeoutError(f"{self.base_url} timed out: {failure!r}")
        if failure is not None or response is None:
            return LLMUpstreamError(f"{self.base_url} unreachable: {failure!r}")
        if response.status_code >= 400:
            return _status_error(response)
        try:
            return _parse(response)
        except LLMResponseError as exc:
            return exc

    def close(self) -> None:
        self._client.close()


def _retryable(error: LLMError) -> bool:
    if isinstance(error, LLMTimeoutError):
        return True
    return isinstance(error, LLMUpstreamError) and (error.status is None or error.status in RETRY_STATUSES)


def _status_error(response: httpx.Response) -> LLMUpstreamError:
    try:
        detail = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200]
    return LLMUpstreamError(f"upstream answered {response.status_code}: {detail}", response.status_code)


def _parse(response: httpx.Response) -> ChatResponse:
    try:
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        return ChatResponse(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMResponseError(f"malformed chat completion: {response.text[:200]!r}") from exc
