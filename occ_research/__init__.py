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
    ContextLengthError,
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
    CompressOptions,
    MessageCache,
    Pipeline,
    Strategy,
    TraceEntry,
    list_strategies,
    make_strategy,
    register_strategy,
    strategy_from_config,
)
from .strategies._prepare import OPTION_NAMES, with_defaults

__version__ = "0.1.0"

DEFAULT_STRATEGY = "bm25"


def compress(
    prompt: str | Sequence[Mapping[str, Any]],
    strategy: str | Strategy = DEFAULT_STRATEGY,
    *,
    preset: str | None = None,
    **options_and_params: Any,
) -> CompressionResult:
    """Compress chat messages or a text with a strategy (by name or instance) or a named preset.

    Keywords named in ``CompressOptions`` (``rate``, ``target_tokens``, ``question``, ``model``, ``seed``,
    ``compress_system``, ``chat``, ``cache_stable``, ``cache``) say how to compress; any other keyword is a
    parameter of the strategy named by ``strategy`` (``compress(messages, "bm25", rate=0.25, k1=1.2)``).
    A preset brings its own strategy and budget; the budget is used unless ``rate`` or ``target_tokens`` is
    given.
    """
    options = {k: v for k, v in options_and_params.items() if k in OPTION_NAMES}
    params = {k: v for k, v in options_and_params.items() if k not in OPTION_NAMES}
    if preset is not None:
        loaded = load_preset(preset)
        chosen = loaded.strategy.clone(**params) if params else loaded.strategy
        if options.get("rate") is None and options.get("target_tokens") is None:
            options.update(rate=loaded.rate, target_tokens=loaded.target_tokens)
    elif isinstance(strategy, Strategy):
        chosen = strategy.clone(**params) if params else strategy
    else:
        chosen = make_strategy(strategy, **params)
    return chosen.compress(prompt, **with_defaults(options))


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRATEGY",
    "ChatPolicy",
    "CompressOptions",
    "CompressionResult",
    "ConfigurationError",
    "ContextLengthError",
    "DatasetError",
    "EmbeddingModelError",
    "InvalidInputError",
    "InvalidParameterError",
    "LLMError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUpstreamError",
    "LocalModelError",
    "MessageCache",
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
