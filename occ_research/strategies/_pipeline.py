"""Strategies in sequence, e.g. dedup then tfidf; a pipeline is itself a strategy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .._messages import Message
from ..exceptions import InvalidParameterError
from ._base import Prepared, Strategy
from ._dedup import DedupStrategy
from ._prepare import restate
from ._rankers import Bm25Strategy
from ._registry import register_strategy
from ._results import CompressionResult


@register_strategy("pipeline")
@dataclass
class Pipeline(Strategy):
    """Runs ``steps`` in order, each on the output of the one before (default: dedup, then bm25).

    The budget applies to the last step (computed from the original prompt's tokens). ``stage_budgets``
    gives the earlier steps budgets too, as multiples of the final one (coarse to fine: ``[3.0, 1.5]`` lets
    a passage ranker keep three times the final budget and a sentence ranker one and a half times, before a
    token pruner makes the last cut); steps without an entry, or with 0, run without a budget and remove
    only what they always remove (e.g. duplicates). The question and the chat policy's decisions are made
    once, from the original prompt, and handed to every step, so a rewrite cannot change what is protected.
    """

    steps: list[Strategy] = field(default_factory=lambda: [DedupStrategy(), Bm25Strategy()])
    stage_budgets: list[float] = field(default_factory=list)

    def validate(self) -> None:
        if not self.steps or not all(isinstance(s, Strategy) for s in self.steps):
            raise InvalidParameterError("pipeline.steps must be a non-empty list of strategies")
        if len(self.stage_budgets) >= len(self.steps) or any(
            isinstance(b, bool) or not isinstance(b, int | float) or b < 0 for b in self.stage_budgets
        ):
            raise InvalidParameterError(
                "pipeline.stage_budgets must hold one non-negative multiple per step before the last"
            )
        for step in self.steps:
            step.validate()

    def _compress_prepared(self, job: Prepared) -> CompressionResult:
        target, model = job.target, job.model
        results: list[CompressionResult] = []
        current: list[Message] = job.messages
        for i, step in enumerate(self.steps):
            multiple = 1.0 if i == len(self.steps) - 1 else (self.stage_budgets[i : i + 1] or [0.0])[0]
            budget = None if target is None or not multiple else int(target * multiple)
            # the same question and per-message decisions (chat policy) for every step
            result = step._compress_prepared(restate(job, current, budget))
            results.append(result)
            current = result.messages
        final = results[-1]
        return CompressionResult(
            messages=final.messages,
            original_tokens=job.original_tokens,
            compressed_tokens=final.compressed_tokens,
            target_tokens=target,
            budget_met=final.budget_met,
            seconds=time.perf_counter() - job.started,
            strategy=self.name,
            params=self.config(),
            model=model,
            note="; ".join(f"{r.strategy}: {r.note}" for r in results if r.note),
            trace=tuple(entry for r in results for entry in r.trace),
        )
