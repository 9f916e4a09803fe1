"""The strategy contract: what every strategy takes, returns and guarantees.

``Strategy.compress`` is a template method. It validates the parameters and the prompt, splits every message
text into atoms (``occ_research.text``), groups the compressible ones into *units* at the strategy's
granularity, counts tokens with the target model's encoding, and turns a rate into a token budget. The
strategy's one method, ``_choose``, says which units to keep (and may rewrite a kept unit, e.g. into a
"duplicate removed" marker). The base class then rebuilds the messages and checks the result, so that every
strategy guarantees the same things:

- never more tokens than the input; no message dropped, reordered or changed in role;
- everything but message text (tool calls and ids, names, images, unknown keys) is left as it was, and so
  are protected blocks (fenced code, JSON, Markdown tables), the question and, unless the caller opts in,
  system and developer messages;
- with a budget, the result fits it, or ``budget_met`` is False and ``note`` says why;
- the same input and seed give the same output.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..exceptions import InvalidParameterError
from ..messages import (
    INSTRUCTION_ROLES,
    Message,
    Slot,
    default_question,
    find_question,
    normalize_prompt,
    replace_texts,
    text_slots,
)
from ..registry import Registry
from ..text import Segmented, join_atoms, split_text
from ..tokens import DEFAULT_MODEL, count_messages_tokens, count_text_tokens, encoding_for_model

Granularity = Literal["sentence", "paragraph", "passage"]
GRANULARITIES: tuple[Granularity, ...] = ("sentence", "paragraph", "passage")
MIN_TRIM_TOKENS = 4  # below this, filling the budget with a cut sentence adds noise, not information


def param(
    default: Any,
    *,
    choices: Sequence[Any] | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """Declare a strategy parameter: a dataclass field whose value ``Strategy.validate`` checks."""
    return field(default=default, metadata={"choices": choices, "low": low, "high": high})


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
class Request:
    """What ``_choose`` sees: the units in document order and the tokens they may use together."""

    units: tuple[Unit, ...]
    budget: int | None  # None: no budget, the strategy removes only what it would remove anyway
    question: str  # "" when there is none
    model: str
    seed: int
    #: scratch space shared by the calls of one ``compress`` (which may choose several times with budgets
    #: adjusted to the measured result): lets a strategy score once and select many times
    scratch: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(slots=True)
class Choice:
    """``kept`` maps unit index to the text to emit for it (its own text, or a rewrite of it)."""

    kept: dict[int, str]
    scores: Sequence[float] | None = None  # per unit, higher = more worth keeping
    note: str = ""


@dataclass(frozen=True, slots=True)
class TraceEntry:
    step: str
    message: int
    action: Literal["kept", "dropped", "rewritten"]
    tokens: int
    score: float | None
    text: str


@dataclass(frozen=True)
class CompressionResult:
    """The compressed messages and the numbers that describe what happened."""

    messages: list[Message]
    original_tokens: int
    compressed_tokens: int
    target_tokens: int | None
    budget_met: bool
    seconds: float
    strategy: str
    params: dict[str, Any]
    model: str
    note: str = ""
    trace: tuple[TraceEntry, ...] = ()

    @property
    def ratio(self) -> float:
        """Original tokens per compressed token (2.0 means half the tokens)."""
        return self.original_tokens / max(self.compressed_tokens, 1)

    @property
    def rate(self) -> float:
        """Compressed tokens as a fraction of the original."""
        return self.compressed_tokens / max(self.original_tokens, 1)

    @property
    def saved_tokens(self) -> int:
        return self.original_tokens - self.compressed_tokens

    @property
    def text(self) -> str:
        """The text of all messages, joined by blank lines (the whole output for a plain-text prompt)."""
        return "\n\n".join(s.text for s in text_slots(self.messages))

    def stats(self) -> dict[str, Any]:
        """The numbers, JSON-ready, without messages and trace."""
        return {
            "strategy": self.strategy,
            "params": self.params,
            "model": self.model,
            "original_tokens": self.original_tokens,
            "compressed_tokens": self.compressed_tokens,
            "saved_tokens": self.saved_tokens,
            "ratio": round(self.ratio, 4),
            "rate": round(self.rate, 4),
            "target_tokens": self.target_tokens,
            "budget_met": self.budget_met,
            "seconds": round(self.seconds, 6),
            "note": self.note,
        }


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str) -> Any:
    """Class decorator: register a ``Strategy`` subclass under ``name``."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES.register(name)(cls)
        return cls

    return add


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
        return strategy_from_config({**self.config(), **changes})

    def config(self) -> dict[str, Any]:
        """``{"strategy": name, **params}``, with nested strategies as configs: JSON/TOML-ready."""
        params = {k: _config_value(v) for k, v in self.get_params().items()}
        return {"strategy": self.name, **params}

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            _check_param(self.name, f, getattr(self, f.name))

    def _granularity(self) -> Granularity:
        granularity: Granularity = getattr(self, "granularity", "sentence")
        return granularity

    # -- the template method ---------------------------------------------------------------------------
    def compress(
        self,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        question: str | None = None,
        model: str = DEFAULT_MODEL,
        seed: int = 0,
        compress_system: bool = False,
    ) -> CompressionResult:
        """Compress chat ``messages`` (or a plain text, taken as one user message).

        Budget: ``rate`` (kept fraction of the prompt's tokens, 0 < rate <= 1) or ``target_tokens``; neither
        means the strategy removes only what it always removes (duplicates, for ``dedup``).
        ``question``: None takes the last paragraph of the last user turn (no question for plain text);
        "" means no question; any other text is used for scoring and protected where it occurs verbatim.
        """
        started = time.perf_counter()
        self.validate()
        check_budget(rate, target_tokens)
        messages = normalize_prompt(prompt)
        slots = text_slots(messages)
        memo: dict[str, int] = {}  # text -> tokens, shared by the counts below
        original = count_messages_tokens(messages, model, memo)
        target = target_tokens if rate is None else int(rate * original)
        question, located = resolve_question(prompt, slots, question)

        layout = _Layout(slots, located, compress_system, self._granularity(), model)
        fixed = original - sum(u.tokens for u in layout.units) - layout.label_tokens
        budget = None if target is None else max(0, target - fixed)
        request = Request(layout.units, budget, question, model, seed)
        if target is None or not self.fits_budget:
            choice = self._choose(request)
            out = replace_texts(messages, slots, layout.render(choice.kept))
            compressed = count_messages_tokens(out, model, memo)
        else:
            choice, out, compressed = self._choose_to_fit(request, layout, messages, slots, target, memo)
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
            floor = count_messages_tokens(replace_texts(messages, slots, layout.render({})), model, memo)
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
            seconds=time.perf_counter() - started,
            strategy=self.name,
            params=self.config(),
            model=model,
            note=note,
            trace=_trace(self.name, layout.units, choice),
        )

    def _choose_to_fit(
        self,
        request: Request,
        layout: _Layout,
        messages: list[Message],
        slots: Sequence[Slot],
        target: int,
        memo: dict[str, int],
    ) -> tuple[Choice, list[Message], int]:
        """Choose, render and count; adjust the budget by the measured gap until the result fits snugly.

        Units are counted one by one, so the joined text differs from their sum by a few tokens (line
        breaks, labels, merges at boundaries). The gap measured on the rendered prompt goes back into the
        budget: added when under by more than 2%, taken off (doubling each time) when over. As a last
        resort the least valuable units are dropped until the prompt fits.
        """
        tolerance = max(1, target // 50)
        best: tuple[Choice, list[Message], int] | None = None
        overshoot_scale = 1
        for _ in range(6):
            choice = self._choose(request)
            out = replace_texts(messages, slots, layout.render(choice.kept))
            compressed = count_messages_tokens(out, model=request.model, memo=memo)
            if compressed <= target:
                if best is None or compressed > best[2]:
                    best = (choice, out, compressed)
                if target - compressed <= tolerance:
                    break
                budget = request.budget + (target - compressed)  # type: ignore[operator]
            else:
                budget = request.budget - overshoot_scale * (compressed - target)  # type: ignore[operator]
                overshoot_scale *= 2
            budget = max(0, budget)
            if budget == request.budget:
                break
            request = dataclasses.replace(request, budget=budget)
        if best is not None:
            return best
        return _fit_after_render(layout, choice, messages, slots, target, request.model, memo)

    def _choose(self, request: Request) -> Choice:
        """Say which units to keep. Subclasses implement this and nothing else of the pipeline."""
        raise NotImplementedError


class RankingStrategy(Strategy):
    """A strategy that scores units once (``_score``) and keeps the best that fit (``fit_by_score``)."""

    def _score(self, request: Request) -> Sequence[float]:
        """One score per unit, higher = more worth keeping, length-normalised (value per token)."""
        raise NotImplementedError

    def _choose(self, request: Request) -> Choice:
        if "scores" not in request.scratch:
            request.scratch["scores"] = self._score(request)
        return fit_by_score(request, request.scratch["scores"])


def coarse_cut(request: Request, max_tokens: int) -> Request | Choice:
    """Bound the work of a model-based strategy: at most ``max_tokens`` of text reach the model.

    When the compressible text is longer, question-aware BM25 first keeps the best units: up to
    ``max_tokens`` of them, handed back as a narrower request for the model to compress further; or, when
    the budget itself is at least ``max_tokens``, the whole selection, returned as the final choice (the
    model could not read that much text at a bearable cost).
    """
    total = sum(u.tokens for u in request.units)
    if request.budget is None or total <= max_tokens:
        return request
    coarse = make_strategy("bm25")
    scratch = request.scratch.setdefault("coarse", {})
    if request.budget >= max_tokens:
        choice = coarse._choose(dataclasses.replace(request, scratch=scratch))
        choice.note = f"text over max_model_tokens={max_tokens} with a larger budget: bm25 selection only"
        return choice
    cut = coarse._choose(dataclasses.replace(request, budget=max_tokens, scratch=scratch))
    units = tuple(u for u in request.units if cut.kept.get(u.index) == u.text)
    return dataclasses.replace(request, units=units)


# -- helpers for strategies ----------------------------------------------------------------------------


def fit_by_score(request: Request, scores: Sequence[float]) -> Choice:
    """Keep the best-scoring units that fit the budget, then fill what is left with the head of the next.

    Scores here are length-normalised relevance (cosine, BM25, compression distance), i.e. value per
    token, so ranking by score is the greedy knapsack rule. Units that do not fit are skipped, so smaller
    ones further down can still use the budget. Ties go to the earlier unit; a score of -inf is never kept.
    """
    units = request.units
    candidates = [u for u in units if scores[u.index] > -math.inf]
    if request.budget is None:
        return Choice({u.index: u.text for u in candidates}, scores)
    order = sorted(candidates, key=lambda u: (-scores[u.index], u.index))
    budget = Budget(request.budget)
    kept: dict[int, str] = {}
    for unit in order:
        if budget.take(unit):
            kept[unit.index] = unit.text
    if budget.left >= MIN_TRIM_TOKENS:
        for unit in order:
            if unit.index not in kept:
                head = budget.take_part(unit, request.model)
                if head:
                    kept[unit.index] = head
                break
    return Choice(kept, scores)


class Budget:
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

    def take_part(self, unit: Unit, model: str, *, from_end: bool = False) -> str:
        """The longest whole-word head (or tail) of the unit that fits; spends what it costs."""
        encode = encoding_for_model(model).encode_ordinary
        extra = self.cost(unit) - len(encode(unit.text))  # its label and the line break after it
        part = trim_to_tokens(unit.text, self.left - extra, model, from_end=from_end)
        if part:
            self.left -= len(encode(part)) + extra
            self._paid.add(unit.label)
        return part


_WORD = re.compile(r"\S+\s*")


def trim_to_tokens(text: str, max_tokens: int, model: str, *, from_end: bool = False) -> str:
    """The longest whole-word head (or tail) of ``text`` with at most ``max_tokens`` tokens."""
    words = _WORD.findall(text)
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
    return piece(low)


def resolve_question(
    prompt: object, slots: Sequence[Slot], question: str | None
) -> tuple[str, tuple[int, tuple[int, int]] | None]:
    """The question text and where it stands (slot, span) in the prompt, if it stands there verbatim.

    None means the default: the last paragraph of the last user turn, or no question for plain text.
    """
    if question is None and isinstance(prompt, str):
        return "", None
    if question is None:
        located = default_question(slots)
        return (slots[located[0]].text[slice(*located[1])] if located else ""), located
    return question, find_question(slots, question)


def check_budget(rate: float | None, target_tokens: int | None) -> None:
    if rate is not None and target_tokens is not None:
        raise InvalidParameterError("give either rate or target_tokens, not both")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1
    ):
        raise InvalidParameterError(f"rate must be a number with 0 < rate <= 1, got {rate!r}")
    if target_tokens is not None and (
        isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens < 0
    ):
        raise InvalidParameterError(f"target_tokens must be a non-negative integer, got {target_tokens!r}")


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build a registered strategy by name; unknown names and parameters get a "did you mean"."""
    cls = STRATEGIES.get(name)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in params if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known) or 'none'}"
        raise InvalidParameterError(f"strategy {name!r} has no parameter {unknown[0]!r}{hint}")
    return cls(**params)


def strategy_from_config(config: Mapping[str, Any]) -> Strategy:
    """Inverse of ``Strategy.config``: ``{"strategy": "tfidf", "granularity": "sentence"}``."""
    if not isinstance(config.get("strategy"), str):
        # the config's values are not echoed: a misconfigured file must not have its contents printed
        raise InvalidParameterError(
            f"a strategy config needs a 'strategy' name (keys found: {', '.join(map(str, config)) or 'none'})"
        )
    params = {k: v for k, v in config.items() if k != "strategy"}
    if "steps" in params and isinstance(params["steps"], list):
        params["steps"] = [s if isinstance(s, Strategy) else strategy_from_config(s) for s in params["steps"]]
    return make_strategy(config["strategy"], **params)


def _config_value(value: Any) -> Any:
    if isinstance(value, Strategy):
        return value.config()
    if isinstance(value, list | tuple):
        return [_config_value(v) for v in value]
    return value


def _check_param(strategy: str, f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    where = f"{strategy}.{f.name}"
    default = f.default
    if default is not dataclasses.MISSING and default is not None:
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and expected is not bool):
            raise InvalidParameterError(f"{where} must be {expected.__name__}, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidParameterError(f"{where} must be one of {list(meta['choices'])}, got {value!r}{hint}")
    if meta.get("low") is not None and value < meta["low"]:
        raise InvalidParameterError(f"{where} must be >= {meta['low']}, got {value!r}")
    if meta.get("high") is not None and value > meta["high"]:
        raise InvalidParameterError(f"{where} must be <= {meta['high']}, got {value!r}")


# -- internals -----------------------------------------------------------------------------------------


class _Layout:
    """Atoms of every slot, the units built from them, and how to render a choice back into texts."""

    def __init__(
        self,
        slots: Sequence[Slot],
        question: tuple[int, tuple[int, int]] | None,
        compress_system: bool,
        granularity: Granularity,
        model: str,
    ) -> None:
        self.slots = slots
        self.segmented: list[Segmented | None] = []
        self.members: list[tuple[int, tuple[int, ...]]] = []  # per unit: slot index, atom indices
        texts: list[str] = []
        counted: list[str] = []
        lines: list[tuple[int, int]] = []
        labels: dict[tuple[int, int], str] = {}  # (slot, line) -> speaker label on that line
        roles: list[tuple[int, str]] = []
        for k, slot in enumerate(slots):
            if slot.role in INSTRUCTION_ROLES and not compress_system:
                self.segmented.append(None)
                continue
            protected = [question[1]] if question and question[0] == k else []
            seg = split_text(slot.text, protected)
            self.segmented.append(seg)
            for atom in seg.atoms:
                if atom.kind == "label":
                    labels[(k, atom.line)] = atom.text
            sentences = [i for i, atom in enumerate(seg.atoms) if atom.kind == "sentence"]
            # lines and blocks only grow along the atoms, so a unit is a run of sentences with the same key
            for _, run in itertools.groupby(sentences, key=_unit_key(seg, granularity)):
                atom_ids = tuple(run)
                self.members.append((k, atom_ids))
                texts.append(_join_members(seg, atom_ids))
                lines.append((k, seg.atoms[atom_ids[0]].line))
                roles.append((slot.message, slot.role))
                # a kept unit also pays for the line break after it, so count that too
                counted.append(texts[-1] + "\n" * min(seg.atoms[atom_ids[-1]].after.count("\n"), 2))
        tokens = count_text_tokens(counted, model)
        label_ids = {key: n for n, key in enumerate(labels)}
        label_tokens = dict(
            zip(labels, count_text_tokens([t + " " for t in labels.values()], model), strict=True)
        )
        self.label_tokens = sum(label_tokens.values())
        self.units = tuple(
            Unit(i, text, n, message, role, label_ids.get(line, -1), label_tokens.get(line, 0))
            for i, (text, n, (message, role), line) in enumerate(
                zip(texts, tokens, roles, lines, strict=True)
            )
        )

    def render(self, kept: Mapping[int, str]) -> list[str]:
        pieces: list[list[str | None]] = [
            [a.text if a.kind == "protected" else None for a in seg.atoms] if seg else []
            for seg in self.segmented
        ]
        for unit, (k, atom_ids) in zip(self.units, self.members, strict=True):
            if unit.index in kept:
                emitted = kept[unit.index]
                if emitted == unit.text:
                    for i in atom_ids:
                        pieces[k][i] = self.segmented[k].atoms[i].text  # type: ignore[union-attr]
                elif emitted:
                    pieces[k][atom_ids[0]] = emitted
        texts = []
        for slot, seg, slot_pieces in zip(self.slots, self.segmented, pieces, strict=True):
            if seg is None:
                texts.append(slot.text)
                continue
            lines_kept = {
                a.line
                for a, p in zip(seg.atoms, slot_pieces, strict=False)
                if p is not None and a.kind != "label"
            }
            for i, atom in enumerate(seg.atoms):
                if atom.kind == "label" and slot_pieces[i] is None and atom.line in lines_kept:
                    slot_pieces[i] = atom.text
            texts.append(join_atoms(seg, slot_pieces))
        return texts


def _unit_key(seg: Segmented, granularity: Granularity) -> Callable[[int], int]:
    atoms = seg.atoms
    if granularity == "paragraph":
        return lambda i: atoms[i].line
    if granularity == "passage":
        return lambda i: atoms[i].block
    return lambda i: i


def _join_members(seg: Segmented, atom_ids: Sequence[int]) -> str:
    atoms = seg.atoms
    return "".join(atoms[i].text + (atoms[i].after if i != atom_ids[-1] else "") for i in atom_ids)


def _fit_after_render(
    layout: _Layout,
    choice: Choice,
    messages: list[Message],
    slots: Sequence[Slot],
    target: int,
    model: str,
    memo: dict[str, int],
) -> tuple[Choice, list[Message], int]:
    """Drop the least valuable kept units until the rendered prompt fits ``target``."""
    kept = dict(choice.kept)
    scores = choice.scores

    def rank(i: int) -> tuple[float, int]:  # lowest first: drop order
        return (scores[i], -i) if scores is not None else (0.0, -i)

    while True:
        out = replace_texts(messages, slots, layout.render(kept))
        compressed = count_messages_tokens(out, model, memo)
        if compressed <= target or not kept:
            return Choice(kept, scores, choice.note), out, compressed
        excess = compressed - target
        for i in sorted(kept, key=rank):
            excess -= layout.units[i].tokens
            del kept[i]
            if excess <= 0:
                break


def _trace(step: str, units: Sequence[Unit], choice: Choice) -> tuple[TraceEntry, ...]:
    entries = []
    for unit in units:
        emitted = choice.kept.get(unit.index)
        action: Literal["kept", "dropped", "rewritten"] = (
            "dropped" if emitted is None else "kept" if emitted == unit.text else "rewritten"
        )
        score = None if choice.scores is None else float(choice.scores[unit.index])
        entries.append(TraceEntry(step, unit.message, action, unit.tokens, score, unit.text))
    return tuple(entries)
