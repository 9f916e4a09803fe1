"""The one interface every LLM back end offers (its errors are in ``occ_research.exceptions``)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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
