"""The local model as an upstream: OpenAI-shaped answers from the in-process GGUF model.

Everything a client sends is checked before the model runs, so a bad parameter is a 400 naming it, a prompt
longer than the model's context is a 400 ``context_length_exceeded`` (as OpenAI answers), and a failure
after a stream has started ends it with an error event and ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import partial
from typing import Any

import anyio
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..exceptions import LocalModelError
from ..llm._local import LocalLLM
from ._wire import LOCAL_PARAMETERS, SSE_DONE, error, sse, sse_error

log = logging.getLogger("occ_research.server")


def plain_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The messages as the model's chat template reads them: a role and a string. Text parts are joined,
    a non-text part becomes a placeholder, tool calls are written out, ``developer`` reads as ``system``."""
    plain = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts = [p["text"] if p.get("type") == "text" else f"[{p.get('type')}]" for p in content]
            text = "\n".join(texts)
        else:
            text = content or ""
        for call in message.get("tool_calls") or ():
            function = call["function"]
            text += f"{chr(10) if text else ''}[call {function['name']}({function['arguments']})]"
        role = "system" if message["role"] == "developer" else message["role"]
        plain.append({"role": role, "content": text})
    return plain


class LocalUpstream:
    """Answers any model name with the local model (loaded on first use). llama.cpp takes no ``tools``,
    so those are ignored here; ``n`` > 1 runs the model n times with successive seeds."""

    def __init__(self, model_path: str = "") -> None:
        self.model_path = model_path
        self._llm: LocalLLM | None = None
        self._loading = threading.Lock()  # concurrent first requests load the model once

    def _model(self) -> LocalLLM:
        with self._loading:
            if self._llm is None:
                self._llm = LocalLLM(self.model_path or None)
            return self._llm

    async def respond(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        params: dict[str, Any] = {}
        for name, (valid, expected, argument) in LOCAL_PARAMETERS.items():
            if body.get(name) is None:
                continue
            if not valid(body[name]):
                return error(400, f"'{name}' must be {expected}", param=name, code="invalid_value")
            if argument is not None:
                params.setdefault(argument, body[name])
        n = body.get("n") or 1
        if body.get("stream") and n != 1:
            return error(400, "streaming with n > 1 is not supported by the local model", param="n")
        messages = plain_messages(body["messages"])
        try:
            llm = await anyio.to_thread.run_sync(self._model)
            prompt_tokens = await anyio.to_thread.run_sync(llm.count_prompt_tokens, messages)
        except LocalModelError as exc:
            return error(503, str(exc), kind="server_error", code="local_model_unavailable")
        if prompt_tokens + params.get("max_tokens", 1) > llm.n_ctx:
            return error(
                400,
                f"this model's context window is {llm.n_ctx} tokens; the prompt has {prompt_tokens}"
                + (f" and max_tokens asks for {params['max_tokens']} more" if "max_tokens" in params else ""),
                param="messages",
                code="context_length_exceeded",
            )
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(llm, messages, body["model"], params, prompt_tokens, include_usage),
                media_type="text/event-stream",
                headers=headers,
            )
        try:
            answers = []
            for i in range(n):
                seeded = {**params, "seed": params.get("seed", 0) + i} if n > 1 else params
                answers.append(await anyio.to_thread.run_sync(partial(llm.completion, messages, **seeded)))
        except ValueError as exc:  # llama.cpp refuses what the checks above did not foresee
            log.warning("the local model refused a request: %s", exc)
            return error(400, "the local model refused the request", code="local_model_refused")
        first = answers[0]
        choices = [{**a["choices"][0], "index": i, "logprobs": None} for i, a in enumerate(answers)]
        completion_tokens = sum(a["usage"]["completion_tokens"] for a in answers)
        data = {
            "id": first["id"],
            "object": "chat.completion",
            "created": first["created"],
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": first["usage"]["prompt_tokens"],
                "completion_tokens": completion_tokens,
                "total_tokens": first["usage"]["prompt_tokens"] + completion_tokens,
            },
        }
        return JSONResponse(data, headers=headers)

    async def _stream(
        self,
        llm: LocalLLM,
        messages: list[dict[str, str]],
        model: str,
        params: dict[str, Any],
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Chunks as the model produces them; a failure becomes an error event, and the stream always
        ends with ``data: [DONE]``."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any] | Exception | None](16)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def produce() -> None:
            outcome: Exception | None = None  # None: finished
            try:
                for chunk in llm.completion_chunks(messages, **params):
                    anyio.from_thread.run(send.send, chunk)
            except anyio.BrokenResourceError:
                return  # the client went away
            except Exception as exc:
                outcome = exc
            with contextlib.suppress(anyio.BrokenResourceError):
                anyio.from_thread.run(send.send, outcome)

        produced = 0
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, produce)
            async with receive:
                async for chunk in receive:
                    if chunk is None:
                        break
                    if isinstance(chunk, Exception):
                        log.warning("the local model failed mid-stream: %s: %s", type(chunk).__name__, chunk)
                        message = "the local model failed while answering"
                        yield sse_error(message, "server_error", "local_model_failed")
                        return
                    produced += 1 if chunk["choices"] and chunk["choices"][0]["delta"].get("content") else 0
                    yield sse({**chunk, "id": completion_id, "created": created, "model": model})
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": produced,
                "total_tokens": prompt_tokens + produced,
            }
            final = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield sse(final)
        yield SSE_DONE
