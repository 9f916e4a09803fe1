"""The toolkit for strategy authors: what ``_choose`` sees (``Candidates``: the units and their budget),
what it returns (``Choice``), and helpers to fill a budget (``fit_by_score``, ``Allowance``,
``trim_to_tokens``), to size one from the scores (``relevant_units``, for ``rate="auto"``) or to narrow
long text before a model reads it (``coarse_cut``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._tokens import encoding_for_model
from ._order import HEADER

if TYPE_CHECKING:
    from ._base import Strategy

MIN_TRIM_TOKENS = 4  # below this, filling the budget with a cut sentence adds noise, not information
HEAD_TRIES = 3  # units tried for a head that fits: each try is a binary search over the unit's words


@dataclass(frozen=True, slots=True)
class Unit:
    """A piece of compressible text that a strategy keeps, drops or rewrites as a whole."""

    index: int
    text: str
    tokens: int
    message: int
    role: str
    label: int = -1  # id of the speaker label on the unit's line (-1: none); kept with any unit of its line
    label_tokens: int = 0  # what that label costs, paid once by the first kept unit of the line


@dataclass(frozen=True, slots=True)
class Block:
    """A protected block (fenced code, JSON, a table) somewhere in the prompt, in document order."""

    index: int
    message: int
    text: str
    free: bool  # in text the strategy may change: a repeat of an earlier block may become a marker


@dataclass(frozen=True, slots=True)
class Surroundings:
    """What a strategy may read but not change, in document order: ``text`` holds the candidates' units
    and the sentences of the text that stays as it is (system messages, recent or frozen turns, earlier
    messages in cache-stable mode: these have negative indices and no token count); ``blocks`` every
    protected block."""

    text: tuple[Unit, ...]
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class Candidates:
    """What ``_choose`` sees: the units in document order and the tokens they may use together."""

    units: tuple[Unit, ...]
    budget: int | None  # None: no budget, the strategy removes only what it would remove anyway
    question: str  # "" when there is none
    model: str
    seed: int
    #: whether the units are there for the question they are ranked against: the prompt's own question, or
    #: in cache-stable mode retrieved passages (numbered), fetched for their turn's question. Not pasted text
    #: ranked against its own turn, which a later turn may ask about anything in
    for_question: bool = True
    #: scratch space shared by the calls of one ``compress`` (which may choose several times with budgets
    #: adjusted to the measured result): lets a strategy score once and select many times
    scratch: dict[str, Any] = field(default_factory=dict, compare=False)
    #: the rest of the prompt, split on demand (``Layout.surroundings``)
    survey: Callable[[], Surroundings] | None = field(default=None, compare=False)

    def surroundings(self) -> Surroundings:
        """The units and the text around them (only the units when there is no layout behind them)."""
        return self.survey() if self.survey is not None else Surroundings(self.units, ())


@dataclass(slots=True)
class Choice:
    """``kept`` maps unit index to the text to emit for it (its own text, or a rewrite of it)."""

    kept: dict[int, str]
    scores: Sequence[float] | None = None  # per unit, higher = more worth keeping
    note: str = ""
    #: free protected blocks to replace by a marker (index -> marker): honoured only for an exact repeat
    #: of an earlier block, so nothing is lost
    blocks: dict[int, str] = field(default_factory=dict)


def fit_by_score(candidates: Candidates, scores: Sequence[float], *, relevance: bool = True) -> Choice:
    """Keep the best-scoring units that fit the budget, then fill what is left with the head of the next.

    Scores here are length-normalised relevance (cosine, BM25, compression distance), i.e. value per
    token, so ranking by score is the greedy knapsack rule. A unit that does not fit ends the choice when
    ranked against the prompt's question, else it is skipped and smaller ones further down use the budget
    (``stops_at_misfit``; ``relevance=False``, scores that say nothing about relevance: always skipped).
    Ties go to the earlier unit; a score of -inf is never kept.
    """
    units = candidates.units
    eligible = [u for u in units if scores[u.index] > -math.inf]
    if candidates.budget is None:
        return Choice({u.index: u.text for u in eligible}, scores)
    order = sorted(eligible, key=lambda u: (-scores[u.index], u.index))
    allowance = Allowance(candidates.budget)
    kept: dict[int, str] = {}
    stop = relevance and stops_at_misfit(candidates)
    for unit in order:
        if allowance.take(unit):
            kept[unit.index] = unit.text
        elif stop:
            break
    fill_with_head(order, kept, allowance, candidates.model)
    return Choice(kept, scores)


def stops_at_misfit(candidates: Candidates) -> bool:
    """Whether the first unit (by score) that does not fit ends the choice, the budget left going to its
    head (``fill_with_head``), rather than to smaller units further down.

    Yes when the units are ranked against the prompt's own question: relevance falls off, and on NQ at 8x
    a short unrelated sentence often took the room where the next sentence of the gold passage would have
    shown its answer. No without a question (salience spreads over the text: whole sentences are worth
    more than a cut one) and in cache-stable mode, where a message is ranked against its own turn and a
    later turn may ask about what that turn did not (there the smaller units keep more of it), unless the
    message holds retrieved passages, which were fetched for that turn's question (``for_question``).
    """
    return bool(candidates.question) and candidates.for_question


def relevant_units(units: Sequence[Unit], scores: Sequence[float], threshold: float) -> list[Unit]:
    """The units that stand out: those scoring at least ``threshold`` of the way from the lowest score to
    the highest. This is where ``rate="auto"`` stops: keep in score order until relevance falls below that
    line. Scores are taken relative to the prompt's own range, so the rule reads the same for BM25
    (unbounded), cosines and fused scores. When every unit scores the same, nothing stands out and all of
    them count (the ceiling then decides); a score of -inf never counts.
    """
    finite = [(u, scores[u.index]) for u in units if math.isfinite(scores[u.index])]
    if not finite:
        return []
    low = min(score for _, score in finite)
    high = max(score for _, score in finite)
    line = low + threshold * (high - low)
    return [u for u, score in finite if high <= low or score >= line]


def fill_with_head(order: Sequence[Unit], kept: dict[int, str], allowance: Allowance, model: str) -> None:
    """Spend what is left of ``allowance`` on the head of the best unit not kept whole (in ``order``), if at
    least ``MIN_TRIM_TOKENS`` are left: a cut sentence is worth more than unused budget. A unit kept in part
    (a passage's header kept without the sentence it opens) is extended. When the best one has no head
    that fits (its header alone is too long: ``head_floor``), the next ones are tried, up to ``HEAD_TRIES``."""
    if allowance.left < MIN_TRIM_TOKENS:
        return
    open_units = (unit for unit in order if kept.get(unit.index) != unit.text)
    for unit in itertools.islice(open_units, HEAD_TRIES):
        head = allowance.take_part(unit, model, beyond=kept.get(unit.index, ""))
        if head:
            kept[unit.index] = head
            return


class Allowance:
    """Tokens left to spend on units, charging a line's speaker label once, with its first kept unit."""

    def __init__(self, tokens: int) -> None:
        self.left = tokens
        self._paid: set[int] = set()

    def cost(self, unit: Unit) -> int:
        return unit.tokens + (unit.label_tokens if unit.label >= 0 and unit.label not in self._paid else 0)

    def take(self, unit: Unit, tokens: int | None = None) -> bool:
        """Spend the unit's cost (or ``tokens`` of it, for a part) and its label's, if that fits."""
        cost = self.cost(unit) - unit.tokens + (unit.tokens if tokens is None else tokens)
        if cost > self.left:
            return False
        self.left -= cost
        self._paid.add(unit.label)
        return True

    def take_part(self, unit: Unit, model: str, *, from_end: bool = False, beyond: str = "") -> str:
        """The longest whole-word head (or tail) of the unit that fits, if it is longer than ``beyond`` (what
        is kept of the unit already); spends what it costs. "" (nothing spent) if there is none."""
        encode = encoding_for_model(model).encode_ordinary
        extra = self.cost(unit) - len(encode(unit.text))  # its label and the line break after it
        part = trim_to_tokens(unit.text, self.left - extra, model, from_end=from_end)
        if len(part) <= len(beyond):
            return ""
        self.left -= len(encode(part)) + extra
        self._paid.add(unit.label)
        return part


WORD = re.compile(r"\S+\s*")  # a word with the space after it: what heads are cut at


def trim_to_tokens(text: str, max_tokens: int, model: str, *, from_end: bool = False) -> str:
    """The longest whole-word head (or tail) of ``text`` with at most ``max_tokens`` tokens."""
    words = WORD.findall(text)
    encode = encoding_for_model(model).encode_ordinary

    def piece(n: int) -> str:
        return ("".join(words[len(words) - n :]) if from_end else "".join(words[:n])).strip()

    low, high = 0, len(words)
    while low < high:  # largest n with tokens(piece(n)) <= max_tokens
        mid = (low + high + 1) // 2
        if len(encode(piece(mid))) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    if not from_end and low < head_floor(text):
        return ""
    return piece(low)


def head_floor(text: str) -> int:
    """The fewest words a head of ``text`` may keep, if it keeps any: all of a passage header that opens it
    ("Document [3](Title: ...)"). A header cut short ("Document [3](Title:") is neither a header nor a
    sentence: 3-14% of NQ prompts at 4x-16x held one before heads respected it."""
    match = HEADER.match(text)
    return len(WORD.findall(text[: match.end()])) if match else 0


def coarse_cut(candidates: Candidates, max_tokens: int, ranker: Strategy) -> Candidates | Choice:
    """Bound the work of a model-based strategy: at most ``max_tokens`` of text reach the model.

    When the compressible text is longer, a fast question-aware ``ranker`` (BM25) first keeps the best
    units: up to ``max_tokens`` of them, handed back as narrower candidates for the model to compress
    further; or, when the budget itself is at least ``max_tokens``, the whole selection, returned as the
    final choice (the model could not read that much text at a bearable cost).
    """
    total = sum(u.tokens for u in candidates.units)
    if candidates.budget is None or total <= max_tokens:
        return candidates
    scratch = candidates.scratch.setdefault("coarse", {})
    if candidates.budget >= max_tokens:
        choice = ranker._choose(dataclasses.replace(candidates, scratch=scratch))
        choice.note = (
            f"text over max_model_tokens={max_tokens} with a larger budget: {ranker.name} selection only"
        )
        return choice
    cut = ranker._choose(dataclasses.replace(candidates, budget=max_tokens, scratch=scratch))
    units = tuple(u for u in candidates.units if cut.kept.get(u.index) == u.text)
    return dataclasses.replace(candidates, units=units)
