"""LLM back ends behind one interface: OpenAI-compatible servers over httpx, local GGUF models, a call cache.

``make_llm("local")`` is the embedded SmolLM2 model, ``make_llm("gpt-4o-mini")`` uses OpenAI, and
``make_llm("my-model", base_url="http://localhost:8000/v1")`` any OpenAI-compatible server (vLLM, Ollama,
llama.cpp's server).

A new back end subclasses ``LLM`` (``_base.py``: ``chat`` and ``achat``) in a module of its own and is
chosen in ``make_llm``. ``_openai_compat.py`` (httpx, retries), ``_local.py`` (llama-cpp-python, token
log-probabilities), ``_cache.py`` (SQLite call cache), ``_prompts.py`` (versioned summarisation prompts).
"""

from __future__ import annotations

import os

from ..exceptions import LLMError, LLMResponseError, LLMTimeoutError, LLMUpstreamError, LocalModelError
from ._base import LLM, ChatResponse
from ._cache import CachedLLM, CallCache
from ._local import LocalLLM
from ._openai_compat import OpenAICompatibleLLM


def make_llm(
    spec: str = "local", *, base_url: str = "", cache: bool | None = None, timeout: float = 60.0
) -> LLM:
    """An LLM by name, cached on disk unless ``cache`` is False (None follows ``OCC_LLM_CACHE``, "0" = off).

    ``spec``: "local" (the embedded model), a path to a ``.gguf`` file, or a model name served by an
    OpenAI-compatible server at ``base_url`` (default: ``OCC_LLM_BASE_URL``, else OpenAI). The key is read
    from ``OCC_LLM_API_KEY``, else ``OPENAI_API_KEY``.
    """
    if spec == "local":
        llm: LLM = LocalLLM()
    elif spec.endswith(".gguf"):
        llm = LocalLLM(spec)
    else:
        url = base_url or os.environ.get("OCC_LLM_BASE_URL", "https://api.openai.com/v1")
        key_env = "OCC_LLM_API_KEY" if os.environ.get("OCC_LLM_API_KEY") else "OPENAI_API_KEY"
        llm = OpenAICompatibleLLM(spec, url, api_key_env=key_env, timeout=timeout)
    if cache is None:
        cache = os.environ.get("OCC_LLM_CACHE", "1") != "0"
    return CachedLLM(llm, CallCache()) if cache else llm


__all__ = [
    "LLM",
    "CachedLLM",
    "CallCache",
    "ChatResponse",
    "LLMError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUpstreamError",
    "LocalLLM",
    "LocalModelError",
    "OpenAICompatibleLLM",
    "make_llm",
]
