"""The step every compression shares before a strategy chooses: check, count, find the question, and let
the chat policy (``_policy.py``) decide which text may change."""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast

from .._messages import Message, Slot, find_question, normalize_prompt, text_slots
from .._tokens import DEFAULT_MODEL, TokenMemo, count_messages_tokens, encoding_for_model
from ..exceptions import InvalidParameterError
from ._layout import QuestionSpan, resolve_question
from ._params import AUTO, Rate, check_budget
from ._policy import (
    ChatPolicy,
    Mode,
    SlotPlan,
    chat_question,
    compressible_pieces,
    exchange_questions,
    forms_conversation,
    message_modes,
    slot_plans,
)

if TYPE_CHECKING:  # the cache-stable module builds on this one
    from ._stable import MessageCache


class CompressOptions(TypedDict, total=False):
    """How to compress: the keyword options every strategy takes, declared here once and read by
    ``Strategy.compress``, ``occ_research.compress`` and ``prepare`` (defaults in ``DEFAULT_OPTIONS``).

    ``rate``: the kept fraction of the prompt's tokens (0 < rate <= 1; in a conversation, of the tokens the
    chat policy lets change, see ``tokens_to_remove``), or ``target_tokens`` (a cap on the whole
    prompt); neither means the strategy removes only what it always removes (duplicates, for ``dedup``).
    ``rate="auto"``: a ranking strategy sets the budget per prompt, keeping what scores close to the best
    and stopping where relevance falls off, between its ``auto_min`` and ``auto_max`` fractions
    (``RankingStrategy``); other strategies refuse it, and so does ``cache_stable`` (which gives each
    message ``rate`` of its own compressible tokens).
    ``question``: None takes the last paragraph of the last user turn (in a conversation, the final user
    turn's instructions; no question for plain text); "" means no question; any other text is used for
    scoring and protected where it occurs verbatim.
    ``model``: whose tokenizer counts the tokens. ``seed``: for strategies that draw at random.
    ``compress_system``: system and developer messages may change too (protected by default).
    ``chat``: how conversations are compressed (``ChatPolicy``; default: the chat policy wherever the
    messages form a conversation). ``cache_stable``: each message is compressed from the messages up to it
    alone, at ``rate`` of its own compressible tokens, so what was sent in an earlier turn is sent the same
    way again (``_stable.py``); ``cache``: a ``MessageCache`` that remembers compressed messages across calls.
    """

    rate: Rate | None
    target_tokens: int | None
    question: str | None
    model: str
    seed: int
    compress_system: bool
    chat: ChatPolicy | None
    cache_stable: bool
    cache: MessageCache | None


DEFAULT_OPTIONS: CompressOptions = {
    "rate": None,
    "target_tokens": None,
    "question": None,
    "model": DEFAULT_MODEL,
    "seed": 0,
    "compress_system": False,
    "chat": None,
    "cache_stable": False,
    "cache": None,
}
OPTION_NAMES = frozenset(DEFAULT_OPTIONS)


def with_defaults(options: Mapping[str, Any]) -> CompressOptions:
    """The options with every default filled in; an unknown name is an ``InvalidParameterError`` (at run
    time too: a misspelt ``rtae=0.5`` must not silently compress with no budget)."""
    for name in options:
        if name not in OPTION_NAMES:
            close = difflib.get_close_matches(name, sorted(OPTION_NAMES), n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; options: {', '.join(sorted(OPTION_NAMES))}"
            )
            raise InvalidParameterError(f"unknown compression option {name!r}{hint}")
    return cast(CompressOptions, {**DEFAULT_OPTIONS, **options})


@dataclass(frozen=True)
class Prepared:
    """A prompt made ready for compression by ``prepare``: the same step for every strategy and pipeline."""

    prompt: str | Sequence[Mapping[str, Any]]
    messages: list[Message]  # a validated deep copy
    slots: list[Slot]
    original_tokens: int
    target: int | None  # the budget in tokens for the whole prompt; None: no budget
    question: str
    located: QuestionSpan | None  # where the text that must survive verbatim stands, if it does
    model: str
    seed: int
    compress_system: bool
    started: float
    memo: TokenMemo  # text -> tokens (and where they end), shared by the counts of one compression
    rate: float | None  # None with ``auto``: no fixed fraction
    policy: ChatPolicy
    chat: bool  # the conversation rules apply
    cache_stable: bool
    modes: tuple[Mode, ...]  # per message (``_policy.message_modes``)
    plans: tuple[SlotPlan, ...]  # per slot
    questions: tuple[str, ...]  # per message: its exchange's question (cache-stable mode; else empty)
    #: ``rate="auto"``: the strategy turns its scores into the budget (``target`` is None until then)
    auto: bool = False


def prepare(prompt: str | Sequence[Mapping[str, Any]], options: CompressOptions) -> Prepared:
    """Check the budget and the prompt, count it, turn a rate into tokens, find the question and plan."""
    started = time.perf_counter()
    opts = with_defaults(options)
    rate, target_tokens, question = opts["rate"], opts["target_tokens"], opts["question"]
    model, seed, compress_system = opts["model"], opts["seed"], opts["compress_system"]
    chat, cache_stable = opts["chat"], opts["cache_stable"]
    check_budget(rate, target_tokens)
    auto = rate == AUTO
    policy = chat if chat is not None else ChatPolicy()
    if not isinstance(policy, ChatPolicy):
        raise InvalidParameterError(f"chat must be a ChatPolicy, got {type(policy).__name__}")
    policy.validate()
    if cache_stable and auto:
        raise InvalidParameterError(
            "cache_stable takes a numeric rate (each message keeps that share of its own tokens); "
            "rate='auto' is not supported in cache-stable mode"
        )
    if cache_stable and target_tokens is not None:
        raise InvalidParameterError(
            "cache_stable takes a rate (applied to each message), not target_tokens: a budget for the "
            "whole prompt changes with every turn, so earlier messages could not stay as they were sent"
        )
    messages = normalize_prompt(prompt)
    slots = text_slots(messages)
    memo = TokenMemo(model)
    original = _count(messages, slots, memo)
    fraction = rate if isinstance(rate, int | float) else None
    target = target_tokens if fraction is None else int(fraction * original)
    if isinstance(prompt, str):
        is_chat = False
    elif policy.conversation is not None:
        is_chat = policy.conversation
    else:  # in cache-stable mode a later turn may come: the rules cannot depend on whether it will
        is_chat = cache_stable or forms_conversation(messages)
    text, located = chat_question(slots, question) if is_chat else resolve_question(prompt, slots, question)
    modes = message_modes(
        messages, policy, chat=is_chat, cache_stable=cache_stable, compress_system=compress_system
    )
    plans = slot_plans(slots, modes, located, policy)
    if is_chat and fraction is not None:  # the rate applies to what the chat policy lets change
        target = original - tokens_to_remove(slots, plans, model, memo, fraction)
    questions = (
        exchange_questions(messages, slots, question)
        if cache_stable and messages and not isinstance(prompt, str)
        else ()
    )
    return Prepared(
        prompt,
        messages,
        slots,
        original,
        target,
        text,
        located,
        model,
        seed,
        compress_system,
        started,
        memo,
        fraction,
        policy,
        is_chat,
        cache_stable,
        modes,
        plans,
        questions,
        auto,
    )


def _count(messages: Sequence[Message], slots: Sequence[Slot], memo: TokenMemo) -> int:
    """The prompt's tokens; the texts a strategy may split are encoded with where each token ends, so the
    count and the units' counts come from one pass over each text."""
    for slot in slots:
        memo.ends(slot.text)
    return count_messages_tokens(messages, memo.model, memo)


def tokens_to_remove(
    slots: Sequence[Slot],
    plans: Sequence[SlotPlan],
    model: str,
    memo: dict[str, int],
    rate: float,
    message: int | None = None,
) -> int:
    """The tokens that compressing at ``rate`` removes from the text the plans let change (of one message,
    or of all): in a conversation the rate applies to that text, and what the chat policy protects (recent
    turns, instructions, system messages) is kept on top of it, as LLMLingua's rate applies to the context
    and not to the instruction and question. A budget for the whole prompt would instead make old turns
    pay for the protected ones: at rate 0.5, a user turn whose instructions already fill half of it would
    lose every word of the document pasted into it."""
    encode = encoding_for_model(model).encode_ordinary
    free = 0
    for slot, plan in zip(slots, plans, strict=True):
        if message is None or slot.message == message:
            for piece in compressible_pieces(slot.text, plan):
                if piece not in memo:
                    memo[piece] = len(encode(piece))
                free += memo[piece]
    return free - int(rate * free)


def restate(job: Prepared, messages: Sequence[Message], target: int | None) -> Prepared:
    """The same job on rewritten messages (a pipeline's next step): the same question and decisions per
    message, with the protections found again in the current text."""
    messages = list(messages)
    slots = text_slots(messages)
    located = None
    if job.located is not None:
        k, (start, end) = job.located
        located = find_question(slots, job.slots[k].text[start:end])
    return dataclasses.replace(
        job,
        messages=messages,
        slots=slots,
        original_tokens=_count(messages, slots, job.memo),
        target=target,
        located=located,
        plans=slot_plans(slots, job.modes, located, job.policy),
    )
