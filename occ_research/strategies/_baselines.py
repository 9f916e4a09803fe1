"""Baselines that every report includes: they show what a strategy must beat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._base import RankingStrategy, Strategy
from ._params import GRANULARITIES, param
from ._registry import register_strategy
from ._selection import Allowance, Candidates, Choice, Unit


@register_strategy("identity")
@dataclass
class IdentityStrategy(Strategy):
    """Keeps everything: the reference point for fidelity and the cost of doing nothing."""

    fits_budget = False

    def _choose(self, candidates: Candidates) -> Choice:
        return Choice({u.index: u.text for u in candidates.units})


@register_strategy("truncate")
@dataclass
class TruncateStrategy(Strategy):
    """Keeps the head, the tail, or both ends (``side="middle"``) of the compressible text.

    What most clients do when a prompt is too long; wins when the answer sits at the start or the end.
    """

    side: str = param("middle", choices=("head", "tail", "middle"))

    def _choose(self, candidates: Candidates) -> Choice:
        units, budget = candidates.units, candidates.budget
        if budget is None:
            return Choice({u.index: u.text for u in units})
        if self.side != "middle":
            ordered = units if self.side == "head" else units[::-1]
            return Choice(_take_in_order(ordered, Allowance(budget), candidates.model, self.side == "tail"))
        head_budget = Allowance(budget // 2)
        head = _take_in_order(units, head_budget, candidates.model, from_end=False)
        tail_budget = Allowance(budget - (budget // 2 - head_budget.left))
        rest = [u for u in units[::-1] if u.index not in head]
        return Choice({**head, **_take_in_order(rest, tail_budget, candidates.model, from_end=True)})


def _take_in_order(units: Sequence[Unit], budget: Allowance, model: str, from_end: bool) -> dict[int, str]:
    kept: dict[int, str] = {}
    for unit in units:
        if not budget.take(unit):
            part = budget.take_part(unit, model, from_end=from_end)
            if part:
                kept[unit.index] = part
            break
        kept[unit.index] = unit.text
    return kept


@register_strategy("random")
@dataclass
class RandomStrategy(RankingStrategy):
    """Drops randomly chosen units (seeded) until the budget fits: the floor any ranking must clear."""

    ranks_relevance: ClassVar[bool] = False
    granularity: str = param("sentence", choices=GRANULARITIES)

    def _score(self, candidates: Candidates) -> list[float]:
        return [float(x) for x in np.random.default_rng(candidates.seed).random(len(candidates.units))]
