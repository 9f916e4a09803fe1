"""Compression strategies: the contract, the built-in strategies, and the toolkit for writing one.

Users: ``make_strategy(name, **params)``, ``strategy_from_config``, ``list_strategies``, ``Pipeline``,
``CompressionResult``. Importing this package registers the built-in strategies.

A new strategy goes in a module of its own here (and is imported below so that it registers): a dataclass
subclass of ``Strategy`` (or ``RankingStrategy``), decorated with ``register_strategy(name)``, whose fields
are declared with ``param``; it implements ``_choose(candidates) -> Choice`` (or ``_score(candidates)``),
with the helpers of ``_selection.py``. The contract test then covers it the day it is registered.

    _base.py       Strategy and RankingStrategy: the template method every compression runs
    _params.py     param(), parameter and budget checks
    _selection.py  Candidates, Choice, Unit, fit_by_score, Allowance, trim_to_tokens, coarse_cut
    _prepare.py    CompressOptions (declared once) and the shared first step: check, count, find the
                   question, plan with the chat policy
    _policy.py     ChatPolicy: which text of a conversation may change (user turns, recent turns, frozen)
    _layout.py     text -> units -> text (protected atoms, speaker labels, whitespace, no empty message)
    _fit.py        meeting a budget by measuring the rendered prompt
    _order.py      the order of kept passages (original, relevance, edges) within a message
    _stable.py     cache-stable mode (each message from the messages up to it) and MessageCache
    _results.py    CompressionResult, TraceEntry
    _registry.py   register_strategy, make_strategy, strategy_from_config
    _baselines.py, _rankers.py, _dedup.py, _pipeline.py, _embed.py, _selfinfo.py, _summarize.py,
    _llmlingua_adapter.py: the built-in strategies
"""

# importing the strategy modules registers them
from . import _baselines, _dedup, _embed, _hybrid, _llmlingua_adapter, _rankers, _selfinfo, _summarize
from ._base import RankingStrategy, Strategy, runs_model
from ._params import GRANULARITIES, Granularity, check_budget, param
from ._pipeline import Pipeline
from ._policy import ChatPolicy, forms_conversation
from ._prepare import CompressOptions
from ._registry import STRATEGIES, make_strategy, register_strategy, strategy_from_config
from ._results import CompressionResult, TraceEntry
from ._selection import (
    Allowance,
    Block,
    Candidates,
    Choice,
    Surroundings,
    Unit,
    coarse_cut,
    fill_with_head,
    fit_by_score,
    trim_to_tokens,
)
from ._stable import MessageCache

_ = (_baselines, _dedup, _embed, _hybrid, _llmlingua_adapter, _rankers, _selfinfo, _summarize)


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
    "Block",
    "Candidates",
    "ChatPolicy",
    "Choice",
    "CompressOptions",
    "CompressionResult",
    "Granularity",
    "MessageCache",
    "Pipeline",
    "RankingStrategy",
    "Strategy",
    "Surroundings",
    "TraceEntry",
    "Unit",
    "check_budget",
    "coarse_cut",
    "fill_with_head",
    "fit_by_score",
    "forms_conversation",
    "list_strategies",
    "make_strategy",
    "param",
    "register_strategy",
    "runs_model",
    "strategy_from_config",
    "trim_to_tokens",
]
