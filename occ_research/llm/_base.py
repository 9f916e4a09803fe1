"""The one interface every LLM back end offers, and the errors they raise."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import OCCError


class LLMError(OCCError):
    """An LLM call failed after its retries (base class of the errors below)."""


class LLMTimeoutError(LLMError):
    """The back end did not answer in time."""


class LLMUpstreamError(LLMError):
    """The back end answered with an error status (``status``) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMResponseError(LLMError):
    """The back end answered with something that is not a chat completion."""


@dataclass(frozen=True)
class ChatResponse:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class LLM(ABC):
    """A chat model. ``backend`` and ``model`` identify it (they are part of every cache key)."""

    backend: str
    model: str

    @abstractmethod
    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        """One chat completion; ``params`` are OpenAI parameters (max_tokens, temperature, seed, ...)."""

    async def achat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        """Async form; the default runs ``chat`` in a worker thread."""
        return await asyncio.to_thread(self.chat, messages, **params)
