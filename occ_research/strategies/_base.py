"""The strategy contract: what every strategy takes, returns and guarantees.

``Strategy.compress`` is a template method. ``prepare`` validates the prompt and the budget, counts the
prompt with the target model's encoding and finds the question; ``Layout`` (``_layout.py``) splits the
compressible text into *units* at the strategy's granularity. The strategy's one method, ``_choose``, says
which units to keep (and may rewrite a kept unit, e.g. into a "duplicate removed" marker); a
``RankingStrategy`` writes ``_score`` instead. The base class then rebuilds the messages, fits the budget by
measurement (``_fit.py``) and checks the result, so that every strategy guarantees the same things:

- never more tokens than the input; no message dropped, reordered or changed in role;
- everything but message text (tool calls and ids, names, images, unknown keys) is left as it was, and so
  are protected blocks (fenced code, JSON, Markdown tables), the question and, unless the caller opts in,
  system and developer messages;
- with a budget, the result fits it, or ``budget_met`` is False and ``note`` says why;
- the same input and seed give the same output.

A ``RankingStrategy`` adds two things every ranker shares: ``order`` (where the kept passages go,
``_order.py``) and ``rate="auto"`` (a budget set per prompt from where its scores fall off).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Unpack

from .._messages import replace_texts
from .._tokens import count_messages_tokens
from ..exceptions import InvalidParameterError
from ._fit import fit_to_target
from ._layout import Layout
from ._order import NUMBERED_PASSAGE
from ._params import ORDERS, Granularity, Order, check_param, param
from ._prepare import CompressOptions, Prepared, prepare
from ._results import CompressionResult, trace_of
from ._selection import Candidates, Choice, fit_by_score, relevant_units
from ._stable import compress_stable

__all__ = ["CompressOptions", "Prepared", "RankingStrategy", "Strategy", "prepare"]


@dataclass
class Strategy:
    """Base class. Subclasses are dataclasses whose fields are their parameters, declared with ``param``.

    Constructors only store parameters; ``validate`` checks them when the strategy is first used.
    """

    name: ClassVar[str] = "strategy"
    #: False for strategies that remove only what they always remove (identity, dedup): the base class then
    #: reports a missed budget instead of dropping more to meet it.
    fits_budget: ClassVar[bool] = True
    #: what ``note`` says when such a strategy leaves the prompt over its budget
    missed_budget_note: ClassVar[str] = (
        "does not drop text to meet a budget; combine it with a ranker in a pipeline"
    )
    #: True for strategies that run a model (seconds per prompt, not milliseconds)
    uses_model: ClassVar[bool] = False

    # -- parameters ------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def clone(self, **changes: Any) -> Strategy:
        """A copy with some parameters changed (nested strategies are copied too)."""
        from ._registry import strategy_from_config  # the registry builds strategies: it imports this module

        return strategy_from_config({**self.config(), **changes})

    def config(self) -> dict[str, Any]:
        """``{"strategy": name, **params}``, with nested strategies as configs: JSON/TOML-ready."""
        params = {k: _config_value(v) for k, v in self.get_params().items()}
        return {"strategy": self.name, **params}

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            check_param(self.name, f, getattr(self, f.name))

    def _granularity(self) -> Granularity:
        granularity: Granularity = getattr(self, "granularity", "sentence")
        return granularity

    def _order(self) -> Order:
        order: Order = getattr(self, "order", "original")
        return order

    # -- the template method ---------------------------------------------------------------------------
    def compress(
        self, prompt: str | Sequence[Mapping[str, Any]], **options: Unpack[CompressOptions]
    ) -> CompressionResult:
        """Compress chat ``messages`` (or a plain text, taken as one user message). The options (budget,
        question, model, chat policy, cache-stable mode) are described once, in ``CompressOptions``."""
        self.validate()
        prepared = prepare(prompt, options)
        if prepared.cache_stable:
            cache = options.get("cache")
            return compress_stable(self.name, self.config(), self._compress_prepared, prepared, cache)
        return self._compress_prepared(prepared)

    def _compress_prepared(self, job: Prepared) -> CompressionResult:
        """Choose, rebuild, fit and check (a pipeline runs its steps here instead)."""
        messages, slots, original, target, memo = (
            job.messages,
            job.slots,
            job.original_tokens,
            job.target,
            job.memo,
        )
        layout = Layout(slots, job.plans, self._granularity(), job.model, self._order(), job.memo)
        fixed = original - sum(u.tokens for u in layout.units) - layout.label_tokens
        # in cache-stable mode each message is ranked against its exchange's question (see Candidates)
        for_question = not job.questions or any(NUMBERED_PASSAGE.match(u.text) for u in layout.units)
        candidates = Candidates(
            layout.units, None, job.question, job.model, job.seed, for_question, survey=layout.surroundings
        )
        if job.auto:
            target = self._auto_target(candidates, layout, job)
        budget = None if target is None else max(0, target - fixed)
        candidates = dataclasses.replace(candidates, budget=budget)  # the same scratch space
        if target is None or not self.fits_budget:
            choice = self._choose(candidates)
            out = replace_texts(messages, slots, layout.render(choice.kept, choice.blocks, choice.scores))
            compressed = count_messages_tokens(out, job.model, memo)
        else:
            choice, out, compressed = fit_to_target(self._choose, candidates, layout, job, target)
        note = choice.note
        if compressed > original:  # a rewrite came out longer: never return more than was sent
            out, compressed, choice = messages, original, Choice({u.index: u.text for u in layout.units})
            note = "compression would have added tokens; the prompt is returned unchanged"
        budget_met = target is None or compressed <= target
        if not budget_met and not self.fits_budget:
            reason = f"{self.name} {self.missed_budget_note}"
            note = f"{note}; {reason}" if note else reason
        floor = 0
        if not budget_met and self.fits_budget:
            floor = count_messages_tokens(replace_texts(messages, slots, layout.render({})), job.model, memo)
        if target is not None and floor > target:
            note = (
                f"protected content (system messages, the question, code, JSON, tables, message framing) "
                f"alone is {floor} tokens, over the target of {target}"
            )
        return CompressionResult(
            messages=out,
            original_tokens=original,
            compressed_tokens=compressed,
            target_tokens=target,
            budget_met=budget_met,
            seconds=time.perf_counter() - job.started,
            strategy=self.name,
            params=self.config(),
            model=job.model,
            note=note,
            trace=trace_of(self.name, layout.units, choice),
        )

    def _choose(self, candidates: Candidates) -> Choice:
        """Say which units to keep. Subclasses implement this and nothing else of the pipeline."""
        raise NotImplementedError

    def _auto_target(self, candidates: Candidates, layout: Layout, job: Prepared) -> int:
        """The budget for ``rate="auto"``: only a strategy that ranks units by relevance can say where
        relevance falls off, so the others refuse it rather than guess."""
        raise InvalidParameterError(
            f"rate='auto' needs a strategy that ranks units by relevance (bm25, tfidf, embed, hybrid, ...); "
            f"{self.name} does not: give a number"
        )


@dataclass
class RankingStrategy(Strategy):
    """A strategy that scores units once (``_score``) and keeps the best that fit (``fit_by_score``).

    ``order``: where the kept passages go (``_order.py``): "original" (as they were), "relevance" (most
    relevant first) or "edges" (most relevant at the start and the end, the least in the middle); only
    passages of the same message move, never across protected blocks or the question.

    With ``rate="auto"`` the budget is set per prompt: the units that score at least ``auto_threshold`` of
    the way from the prompt's lowest score to its highest are "relevant"; the budget is what the prompt
    costs keeping just them (with what always stays: protected text, framing), kept between ``auto_min``
    and ``auto_max`` of the prompt's tokens (the floor is met as closely as a fixed rate, the ceiling never
    passed). One passage that stands out gives a small budget; relevance spread over many passages, or
    scores that do not fall off at all (nothing matches the question), a large one. The three parameters
    do nothing with a numeric rate or ``target_tokens``.
    """

    #: False for a ranker whose scores say nothing about relevance (random): it refuses ``rate="auto"``
    ranks_relevance: ClassVar[bool] = True

    order: str = param("original", choices=ORDERS)
    auto_threshold: float = param(0.5, low=0.0, high=1.0)
    auto_min: float = param(0.1, low=0.0, high=1.0)
    auto_max: float = param(0.5, low=0.0, high=1.0)

    def validate(self) -> None:
        super().validate()
        if self.auto_min > self.auto_max:
            raise InvalidParameterError(
                f"{self.name}.auto_min must be <= auto_max, got {self.auto_min!r} > {self.auto_max!r}"
            )

    def _score(self, candidates: Candidates) -> Sequence[float]:
        """One score per unit, higher = more worth keeping, length-normalised (value per token)."""
        raise NotImplementedError

    def _scores(self, candidates: Candidates) -> Sequence[float]:
        """``_score``, computed once per compression (the budget fit chooses several times)."""
        if "scores" not in candidates.scratch:
            candidates.scratch["scores"] = self._score(candidates)
        scores: Sequence[float] = candidates.scratch["scores"]
        return scores

    def _choose(self, candidates: Candidates) -> Choice:
        return fit_by_score(candidates, self._scores(candidates), relevance=self.ranks_relevance)

    def _auto_target(self, candidates: Candidates, layout: Layout, job: Prepared) -> int:
        """What the prompt costs keeping exactly the units that stand out (``relevant_units``), measured
        on the rendered prompt so that the fit that follows keeps all of them, between the floor and the
        ceiling."""
        if not self.ranks_relevance:
            super()._auto_target(candidates, layout, job)
        scores = self._scores(candidates)
        kept = {u.index: u.text for u in relevant_units(candidates.units, scores, self.auto_threshold)}
        out = replace_texts(job.messages, job.slots, layout.render(kept, None, scores))
        needed = count_messages_tokens(out, job.model, job.memo)
        floor, ceiling = int(self.auto_min * job.original_tokens), int(self.auto_max * job.original_tokens)
        return min(ceiling, max(floor, needed))


def runs_model(strategy: Strategy) -> bool:
    """Whether the strategy, or any strategy among its parameters (a pipeline's steps), runs a model."""
    nested = [
        item
        for value in strategy.get_params().values()
        for item in (value if isinstance(value, list | tuple) else [value])
        if isinstance(item, Strategy)
    ]
    return strategy.uses_model or any(runs_model(step) for step in nested)


def _config_value(value: Any) -> Any:
    if isinstance(value, Strategy):
        return value.config()
    if isinstance(value, list | tuple):
        return [_config_value(v) for v in value]
    return value
