"""Compression strategies. Importing this package registers the built-in ones."""

from . import baselines, dedup, embed, llmlingua_adapter, pipeline, rankers, selfinfo, summarize
from .base import (
    STRATEGIES,
    Choice,
    CompressionResult,
    Request,
    Strategy,
    TraceEntry,
    Unit,
    check_budget,
    fit_by_score,
    make_strategy,
    param,
    register_strategy,
    strategy_from_config,
)
from .pipeline import Pipeline


def list_strategies() -> dict[str, str]:
    """Strategy name -> the first line of its docstring."""
    out = {}
    for name in STRATEGIES.names():
        doc = (STRATEGIES.get(name).__doc__ or "").strip()
        out[name] = doc.splitlines()[0] if doc else ""
    return out


__all__ = [
    "STRATEGIES",
    "Choice",
    "CompressionResult",
    "Pipeline",
    "Request",
    "Strategy",
    "TraceEntry",
    "Unit",
    "baselines",
    "check_budget",
    "dedup",
    "embed",
    "fit_by_score",
    "list_strategies",
    "llmlingua_adapter",
    "make_strategy",
    "param",
    "pipeline",
    "rankers",
    "register_strategy",
    "selfinfo",
    "strategy_from_config",
    "summarize",
]
