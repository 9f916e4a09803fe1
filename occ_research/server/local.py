"""The local model as an upstream: OpenAI-shaped answers from the in-process GGUF model."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..llm.local import LocalLLM, LocalModelError

PASSED = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


class LocalUpstream:
    """Answers any model name with the local model (loaded on first use). llama.cpp takes no ``tools``,
    so those are ignored here; ``n`` > 1 runs the model n times with successive seeds."""

    def __init__(self, model_path: str = "") -> None:
        self.model_path = model_path
        self._llm: LocalLLM | None = None

    def _model(self) -> LocalLLM:
        if self._llm is None:
            self._llm = LocalLLM(self.model_path or None)
        return self._llm

    async def respond(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        from .app import error

        params = {k: body[k] for k in PASSED if body.get(k) is not None}
        if body.get("max_completion_tokens") is not None:
            params.setdefault("max_tokens", body["max_completion_tokens"])
        n = body.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 8:
            return error(400, "'n' must be an integer from 1 to 8 for the local model", param="n")
        try:
            llm = await anyio.to_thread.run_sync(self._model)
            if body.get("stream"):
                if n != 1:
                    return error(400, "streaming with n > 1 is not supported by the local model", param="n")
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return StreamingResponse(
                    self._stream(llm, body, params, include_usage),
                    media_type="text/event-stream",
                    headers=headers,
                )
            answers = []
            for i in range(n):
                seeded = {**params, "seed": params.get("seed", 0) + i} if n > 1 else params
                answers.append(
                    await anyio.to_thread.run_sync(partial(llm.completion, body["messages"], **seeded))
                )
        except LocalModelError as exc:
            return error(503, str(exc), kind="server_error", code="local_model_unavailable")
        except ValueError as exc:  # llama.cpp refuses e.g. a prompt longer than its context
            return error(400, f"the local model refused the request: {exc}", code="local_model_refused")
        first = answers[0]
        choices = [{**a["choices"][0], "index": i, "logprobs": None} for i, a in enumerate(answers)]
        prompt_tokens = first["usage"]["prompt_tokens"]
        completion_tokens = sum(a["usage"]["completion_tokens"] for a in answers)
        data = {
            "id": first["id"],
            "object": "chat.completion",
            "created": first["created"],
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return JSONResponse(data, headers=headers)

    async def _stream(
        self, llm: LocalLLM, body: dict[str, Any], params: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[bytes]:
        send, receive = anyio.create_memory_object_stream[dict[str, Any] | None](16)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def produce() -> None:
            try:
                for chunk in llm.completion_chunks(body["messages"], **params):
                    anyio.from_thread.run(send.send, chunk)
            finally:
                anyio.from_thread.run(send.send, None)

        produced = 0
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, produce)
            async with receive:
                async for chunk in receive:
                    if chunk is None:
                        break
                    produced += 1 if chunk["choices"] and chunk["choices"][0]["delta"].get("content") else 0
                    out = {**chunk, "id": completion_id, "created": created, "model": body["model"]}
                    yield f"data: {json.dumps(out)}\n\n".encode()
        if include_usage:
            prompt = await anyio.to_thread.run_sync(lambda: llm.count_prompt_tokens(body["messages"]))
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": produced,
                "total_tokens": prompt + produced,
            }
            final = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(final)}\n\n".encode()
        yield b"data: [DONE]\n\n"
