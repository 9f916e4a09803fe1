"""Compression strategies: the contract, the built-in strategies, and the toolkit for writing one.

Users: ``make_strategy(name, **params)``, ``strategy_from_config``, ``list_strategies``, ``Pipeline``,
``CompressionResult``. Importing this package registers the built-in strategies.

A new strategy goes in a module of its own here (and is imported below so that it registers): a dataclass
subclass of ``Strategy`` (or ``RankingStrategy``), decorated with ``register_strategy(name)``, whose fields
are declared with ``param``; it implements ``_choose(candidates) -> Choice`` (or ``_score(candidates)``),
with the helpers of ``selection.py``. The contract test then covers it the day it is registered.

    base.py       Strategy, RankingStrategy, and the preparation step every compression shares
    params.py     param(), parameter and budget checks
    selection.py  Candidates, Choice, Unit, fit_by_score, Allowance, trim_to_tokens, coarse_cut
    layout.py     text -> units -> text (protected atoms, speaker labels, whitespace)
    results.py    CompressionResult, TraceEntry
    registry.py   register_strategy, make_strategy, strategy_from_config
"""

from . import baselines, dedup, embed, llmlingua_adapter, pipeline, rankers, selfinfo, summarize
from .base import RankingStrategy, Strategy
from .params import GRANULARITIES, Granularity, check_budget, param
from .pipeline import Pipeline
from .registry import STRATEGIES, make_strategy, register_strategy, strategy_from_config
from .results import CompressionResult, TraceEntry
from .selection import Allowance, Candidates, Choice, Unit, coarse_cut, fit_by_score, trim_to_tokens

_ = (baselines, dedup, embed, llmlingua_adapter, pipeline, rankers, selfinfo, summarize)  # registered


def list_strategies() -> dict[str, str]:
    """Strategy name -> the first line of its docstring."""
    out = {}
    for name in STRATEGIES.names():
        doc = (STRATEGIES.get(name).__doc__ or "").strip()
        out[name] = doc.splitlines()[0] if doc else ""
    return out


__all__ = [
    "GRANULARITIES",
    "STRATEGIES",
    "Allowance",
    "Candidates",
    "Choice",
    "CompressionResult",
    "Granularity",
    "Pipeline",
    "RankingStrategy",
    "Strategy",
    "TraceEntry",
    "Unit",
    "check_budget",
    "coarse_cut",
    "fit_by_score",
    "list_strategies",
    "make_strategy",
    "param",
    "register_strategy",
    "strategy_from_config",
    "trim_to_tokens",
]
