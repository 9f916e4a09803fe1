"""occ-research: prompt compression with interchangeable strategies, measured honestly.

>>> from occ_research import compress
>>> result = compress(messages, "bm25", rate=0.5)
>>> result.messages, result.original_tokens, result.compressed_tokens

The public faces: this module (compression, presets, token counting, every error),
``occ_research.strategies`` (strategies and the toolkit for writing one), ``occ_research.evals``
(``evaluate`` and what it is made of), ``occ_research.llm`` (LLM back ends) and ``occ_research.server``
(the reference endpoint). Modules whose names start with ``_`` are the implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._presets import Preset, list_presets, load_preset
from ._tokens import DEFAULT_MODEL, count_tokens, encoding_name_for_model
from .exceptions import (
    ConfigurationError,
    DatasetError,
    EmbeddingModelError,
    InvalidInputError,
    InvalidParameterError,
    LLMError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUpstreamError,
    LocalModelError,
    ModelUnavailableError,
    OCCError,
    PeerUnavailableError,
    PresetError,
    SettingsError,
    SuiteError,
    TokenizerError,
    UnknownNameError,
)
from .strategies import (
    ChatPolicy,
    CompressionResult,
    MessageCache,
    Pipeline,
    Strategy,
    TraceEntry,
    list_strategies,
    make_strategy,
    register_strategy,
    strategy_from_config,
)

__version__ = "0.1.0"

DEFAULT_STRATEGY = "bm25"


def compress(
    prompt: str | Sequence[Mapping[str, Any]],
    strategy: str | Strategy = DEFAULT_STRATEGY,
    *,
    preset: str | None = None,
    rate: float | None = None,
    target_tokens: int | None = None,
    question: str | None = None,
    model: str = DEFAULT_MODEL,
    seed: int = 0,
    compress_system: bool = False,
    chat: ChatPolicy | None = None,
    cache_stable: bool = False,
    cache: MessageCache | None = None,
    **params: Any,
) -> CompressionResult:
    """Compress chat messages or a text with a strategy (by name or instance) or a named preset.

    A preset brings its own budget, used unless ``rate`` or ``target_tokens`` is given. ``params`` go to
    the strategy named by ``strategy``. See ``Strategy.compress`` for the meaning of every argument.
    """
    if preset is not None:
        loaded = load_preset(preset)
        chosen = loaded.strategy
        if rate is None and target_tokens is None:
            rate, target_tokens = loaded.rate, loaded.target_tokens
    elif isinstance(strategy, Strategy):
        chosen = strategy.clone(**params) if params else strategy
    else:
        chosen = make_strategy(strategy, **params)
    return chosen.compress(
        prompt,
        rate=rate,
        target_tokens=target_tokens,
        question=question,
        model=model,
        seed=seed,
        compress_system=compress_system,
        chat=chat,
        cache_stable=cache_stable,
        cache=cache,
    )


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRATEGY",
    "ChatPolicy",
    "CompressionResult",
    "ConfigurationError",
    "DatasetError",
    "EmbeddingModelError",
    "InvalidInputError",
    "InvalidParameterError",
    "LLMError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUpstreamError",
    "LocalModelError",
    "ModelUnavailableError",
    "OCCError",
    "PeerUnavailableError",
    "Pipeline",
    "Preset",
    "PresetError",
    "SettingsError",
    "Strategy",
    "SuiteError",
    "TokenizerError",
    "TraceEntry",
    "UnknownNameError",
    "__version__",
    "compress",
    "count_tokens",
    "encoding_name_for_model",
    "list_presets",
    "list_strategies",
    "load_preset",
    "make_strategy",
    "register_strategy",
    "strategy_from_config",
]
