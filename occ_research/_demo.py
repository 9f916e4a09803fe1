"""The offline demo: every strategy on real prompts from the shared datasets, summarised in one table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from ._messages import text_slots
from ._presets import list_presets, load_preset
from ._tokens import DEFAULT_MODEL
from .evals._datasets import Example, load_examples
from .evals._metrics import contains_answer
from .strategies import STRATEGIES, Pipeline, Strategy, make_strategy


def uses_model(strategy: Strategy) -> bool:
    if isinstance(strategy, Pipeline):
        return any(uses_model(step) for step in strategy.steps)
    return strategy.uses_model


def demo_strategies(with_models: bool = False) -> dict[str, Strategy]:
    """Every registered strategy with default parameters, plus every preset (as ``preset:NAME``).

    Model-based ones (seconds per prompt) only ``with_models``.
    """
    chosen = {name: make_strategy(name) for name in STRATEGIES.names() if name != "pipeline"}
    chosen.update({f"preset:{name}": load_preset(name).strategy for name in list_presets()})
    return {name: s for name, s in chosen.items() if with_models or not uses_model(s)}


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


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of ``summarize`` rows."""
    head = "| task | strategy | n | tokens before | tokens after | rate | budget met | ms (median) | answer kept |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kept = "-" if r["answer_kept"] is None else f"{r['answer_kept']:.0%}"
        lines.append(
            f"| {r['task']} | {r['strategy']} | {r['n']} | {r['original_tokens']:.0f} | {r['compressed_tokens']:.0f} "
            f"| {r['rate']:.3f} | {r['budget_met']:.0%} | {r['ms']:.1f} | {kept} |"
        )
    return "\n".join(lines)


def run_demo(rate: float = 0.25, model: str = DEFAULT_MODEL) -> str:
    examples = [
        *load_examples("nq-multidoc", n=30, documents=10),
        *load_examples("qmsum", n=5),
        *load_examples("sharegpt-chat", n=10),
    ]
    rows = compare(examples, demo_strategies(), rate, model)
    return (
        f"Compressing {len(examples)} real prompts to rate {rate} (tokens counted for {model}).\n"
        "qa = NQ-open with 10 passages (distractors random, not retrieved); summary = QMSum transcripts; "
        "chat = ShareGPT histories.\n'answer kept' = a gold answer still appears in the compressed prompt.\n\n"
        + format_table(summarize(rows))
    )
