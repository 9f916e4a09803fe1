"""Chat datasets built from real ShareGPT conversations: answer fidelity where the chat policy applies.

``needle-chat``: a real conversation (at least ``min_messages`` messages and ``min_tokens`` tokens, up to
its last assistant reply) with one short, generated fact ("By the way, my booking reference is QX-4817.")
put into an *old* user turn, and a final user question asking for it; the gold answer is the value. The
value is drawn at random (seeded per conversation), checked absent from the real text, so no model can guess
it and "the value is still in the compressed prompt" is a model-free measure of what compression lost.

Realism, and what makes the fact compressible at all:

- the fact sits in a user turn before the last ``recent`` real user turns, so the chat policy's verbatim
  window (``keep_recent`` exchanges, 2 by default, and the exchange in progress: the final question) does
  not cover it; in cache-stable mode every user turn takes its compressed form anyway;
- the chat policy keeps a user turn's instructions whole (its closing paragraph and every paragraph under
  ``DOCUMENT_WORDS`` words). ``placement = "sentence"`` (the default) puts the fact after any sentence of the
  turn, or at its end, chosen at random: the real mix, in which most facts land in text the policy keeps.
  ``placement = "document"`` puts it only inside a long paragraph that is not the turn's last (text the
  policy may compress), and skips conversations without one: the hard case, and fewer conversations;
- the final question names what it asks for ("What was my booking reference again?"), as a user would, so
  a question-aware ranker that sees it has a lexical cue; in cache-stable mode an old message is ranked
  against its own user turn instead, so it does not. ``question = "vague"`` asks with words the fact does
  not use (``VAGUE_QUESTION``), for a ranker that must do without the cue.

``sharegpt-next``: the same conversations up to their last user turn that has a reply; the gold answer is the
real next assistant reply cut to its first ``reply_tokens`` tokens, so the runner's likelihood signal
(``LL(reply | compressed history)`` against the original history and the last user turn alone) is the
next-turn score at a fixed, small cost per example (one model step per reply token).

The file is ShareGPT's *split* release: long conversations were cut into pieces (ids ``X_0``, ``X_11``, ...,
the suffix being the index of the piece's first turn). Contiguous pieces are joined back, so the
conversations here are the real ones, not their first 2,048-token piece.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from .._messages import Message
from .._text import protected_blocks, split_sentences
from .._tokens import count_messages_tokens, encoding_for_model
from ..exceptions import DatasetError
from ..strategies._policy import instruction_spans
from ._datasets import Example, _rows, register_dataset
from ._metrics import contains_answer

SHAREGPT_FILE = "sharegpt/sharegpt_v3_first3000_multiturn.jsonl.gz"
PLACEMENTS = ("sentence", "document")
QUESTIONS = ("named", "vague")
#: the final question of ``question = "vague"``: no content word of any fact's sentence
VAGUE_QUESTION = (
    "Earlier in this chat I told you something to remember for later. What exactly was the value I gave?"
)

_ROLES = {"human": "user", "gpt": "assistant"}
# no I, O (nor 0, 1 in _employee): a code a reader cannot misread
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_WORDS = (
    "amber falcon copper meadow silver harbor violet canyon maple orbit cedar lantern velvet tundra "
    "coral summit willow ember pepper glacier"
).split()


def _code(rng: random.Random) -> str:
    return f"{rng.choice(_LETTERS)}{rng.choice(_LETTERS)}-{rng.randrange(1000, 10000)}"


def _order(rng: random.Random) -> str:
    return str(rng.randrange(10_000_000, 100_000_000))


def _employee(rng: random.Random) -> str:
    return "E" + "".join(rng.choice(_LETTERS + string.digits[2:]) for _ in range(5))


def _flight(rng: random.Random) -> str:
    return f"{rng.choice(_LETTERS)}{rng.choice(_LETTERS)} {rng.randrange(100, 10000)}"


def _password(rng: random.Random) -> str:
    first, second = rng.sample(_WORDS, 2)
    return f"{first}-{second}-{rng.randrange(10, 100)}"


@dataclass(frozen=True)
class Fact:
    """A template: the sentence that states the fact, the question that asks for it, how a value is drawn."""

    statement: str  # one sentence, "{value}" marks the value
    question: str
    draw: Callable[[random.Random], str]

    def sentence(self, value: str) -> str:
        return self.statement.format(value=value)


FACTS = (
    Fact("By the way, my booking reference is {value}.", "What was my booking reference again?", _code),
    Fact("For the record, my order number is {value}.", "Can you remind me what my order number is?", _order),
    Fact("My employee ID is {value}, in case that matters.", "What is my employee ID?", _employee),
    Fact("I should mention that my flight number is {value}.", "Which flight number did I mention?", _flight),
    Fact("Also, the Wi-Fi password here is {value}.", "What did I say the Wi-Fi password was?", _password),
    Fact("Just so you know, my ticket number is {value}.", "What was my ticket number?", _order),
)


@dataclass(frozen=True)
class Conversation:
    """A real ShareGPT conversation, its split pieces joined: every human/gpt turn, in order."""

    id: str
    messages: tuple[Message, ...]


@cache
def sharegpt_conversations() -> tuple[Conversation, ...]:
    """The file's conversations in file order, contiguous pieces joined; a conversation whose first piece
    is missing (the file keeps pieces of 4 turns or more) is left out, so each one starts where it started.
    Read once per process: both sets and their tests walk the whole file."""
    pieces: dict[str, list[tuple[int, list[dict[str, str]]]]] = {}
    for row in _rows(SHAREGPT_FILE):
        base, _, start = str(row["id"]).rpartition("_")
        if not base or not start.isdigit():
            base, start = str(row["id"]), "0"
        pieces.setdefault(base, []).append((int(start), list(row["conversations"])))
    conversations = []
    for base, parts in pieces.items():
        parts.sort(key=lambda part: part[0])
        if parts[0][0] != 0:
            continue
        turns = list(parts[0][1])
        for first, more in parts[1:]:
            if first != len(turns):  # a piece is missing: stop where the text stops being contiguous
                break
            turns.extend(more)
        messages = tuple(
            {"role": _ROLES[t["from"]], "content": t["value"]} for t in turns if t["from"] in _ROLES
        )
        conversations.append(Conversation(base, messages))
    return tuple(conversations)


def _long_enough(messages: list[Message], min_messages: int, min_tokens: int, model: str) -> bool:
    return len(messages) >= min_messages and count_messages_tokens(messages, model) >= min_tokens


def _insertion_points(text: str, placement: str) -> list[tuple[int, str]]:
    """Where a sentence can go in a user turn: (offset, separator placed before it).

    After any sentence that ends with ``.``, ``!`` or ``?`` and is followed by whitespace, outside code,
    JSON and tables; and, for ``sentence``, at the end of the turn (as a new paragraph when the turn does
    not end a sentence). For ``document``, only inside long paragraphs that are not the turn's last.
    """
    blocks = protected_blocks(text)
    kept = instruction_spans(text)
    points: list[tuple[int, str]] = []
    position = 0
    for line in text.split("\n"):
        for _, end in split_sentences(line, position):
            ends = text[end - 1] in ".!?" and end < len(text) and text[end].isspace()
            inside = any(start < end <= stop for start, stop in blocks)
            # for "document", a sentence end in an instruction paragraph (short, or the last) is kept whole
            compressible = placement == "sentence" or not any(start < end <= stop for start, stop in kept)
            if ends and not inside and compressible:
                points.append((end, " "))
        position += len(line) + 1
    end = len(text.rstrip())
    if placement == "sentence" and end and not any(start < end <= stop for start, stop in blocks):
        ends_sentence = text[end - 1] in ".!?"
        if not points or points[-1][0] != end:
            points.append((end, " " if ends_sentence else "\n\n"))
    return points


@dataclass(frozen=True)
class Needle:
    """Where the fact went: the message index, the character offset in its original text, what was put."""

    message: int
    offset: int
    inserted: str  # the separator and the sentence
    value: str


def plant_needle(
    messages: list[Message],
    rng: random.Random,
    *,
    recent: int = 2,
    placement: str = "sentence",
    question: str = "named",
) -> tuple[list[Message], Needle, str] | None:
    """The conversation with a fact in an old user turn, the needle, and the final question; None when no
    user turn before the last ``recent`` ones has room for it (see ``_insertion_points``)."""
    users = [k for k, m in enumerate(messages) if m["role"] == "user"]
    old = users[: max(0, len(users) - recent)]
    candidates = [(k, p) for k in old for p in _insertion_points(str(messages[k]["content"]), placement)]
    if not candidates:
        return None
    turns = sorted({k for k, _ in candidates})
    turn = rng.choice(turns)
    offset, separator = rng.choice([p for k, p in candidates if k == turn])
    fact = rng.choice(FACTS)
    real = "\n".join(str(m["content"]) for m in messages)
    for _ in range(100):  # a value that the conversation already holds would be no needle
        value = fact.draw(rng)
        if not contains_answer(real, [value]):
            break
    else:
        return None
    text = str(messages[turn]["content"])
    inserted = separator + fact.sentence(value)
    out: list[Message] = [dict(m) for m in messages]
    out[turn]["content"] = text[:offset] + inserted + text[offset:]
    asked = fact.question if question == "named" else VAGUE_QUESTION
    out.append({"role": "user", "content": asked})
    return out, Needle(turn, offset, inserted, value), asked


def _histories(
    min_messages: int, min_tokens: int, model: str, end: str
) -> Iterator[tuple[str, list[Message]]]:
    """Conversations cut after their last assistant reply (``end = "reply"``) or at their last user turn
    that has a reply, the reply returned as the last message (``end = "user"``), long enough for the set."""
    for conversation in sharegpt_conversations():
        messages = [dict(m) for m in conversation.messages]  # the cached conversations stay as read
        replies = [
            k
            for k, m in enumerate(messages)
            if m["role"] == "assistant" and k and messages[k - 1]["role"] == "user"
        ]
        if not messages or messages[0]["role"] != "user" or not replies:
            continue
        history = messages[: replies[-1] + 1]
        measured = history if end == "reply" else history[:-1]
        if _long_enough(measured, min_messages, min_tokens, model):
            yield conversation.id, history


@register_dataset("needle-chat", task="qa", kind="chat", metric="contains", max_tokens=32, retention=True)
def needle_chat(
    n: int = 200,
    min_messages: int = 6,
    min_tokens: int = 2000,
    recent: int = 2,
    placement: str = "sentence",
    question: str = "named",
    seed: int = 0,
    model: str = "gpt-4o",
) -> list[Example]:
    """Real ShareGPT chats with a generated fact in an old user turn, asked for in a final user turn (see
    the module docstring). Conversations in file order; the fact, its value, turn and place are drawn from
    a generator seeded by ``seed`` and the conversation's id, so an example does not change with ``n``."""
    if placement not in PLACEMENTS:
        raise DatasetError(f"needle-chat: placement must be one of {PLACEMENTS}, got {placement!r}")
    if question not in QUESTIONS:
        raise DatasetError(f"needle-chat: question must be one of {QUESTIONS}, got {question!r}")
    examples = []
    for cid, history in _histories(min_messages, min_tokens, model, "reply"):
        rng = random.Random(f"needle-chat:{seed}:{cid}")
        planted = plant_needle(history, rng, recent=recent, placement=placement, question=question)
        if planted is None:
            continue
        messages, needle, asked = planted
        examples.append(
            Example(f"needle-{cid}-m{needle.message}", messages, asked, [needle.value], "qa", "chat")
        )
        if len(examples) >= n:
            break
    return examples


def truncate_tokens(text: str, tokens: int, model: str = "gpt-4o") -> str:
    """The text's first ``tokens`` tokens, cut back to a whole word (the whole text when it is shorter)."""
    encoding = encoding_for_model(model)
    ids = encoding.encode(text, disallowed_special=())
    if len(ids) <= tokens:
        return text
    head = encoding.decode(ids[:tokens])
    while head and not text.startswith(head):  # a multi-byte character was split: drop its bytes
        tokens -= 1
        head = encoding.decode(ids[:tokens])
    if len(head) < len(text) and not text[len(head)].isspace():
        cut = max(head.rfind(" "), head.rfind("\n"))
        head = head[:cut] if cut > 0 else head
    return head.rstrip()


@register_dataset("sharegpt-next", task="chat", kind="chat", metric="rougel", max_tokens=64)
def sharegpt_next(
    n: int = 200, min_messages: int = 6, min_tokens: int = 2000, reply_tokens: int = 64, model: str = "gpt-4o"
) -> list[Example]:
    """Real ShareGPT chats up to a user turn; the gold answer is the real next assistant reply, cut to its
    first ``reply_tokens`` tokens, for the likelihood of the next turn (see the module docstring)."""
    examples = []
    for cid, history in _histories(min_messages, min_tokens, model, "user"):
        *messages, reply = history
        reference = truncate_tokens(str(reply["content"]), reply_tokens, model)
        if not reference:
            continue
        question = str(messages[-1]["content"])
        examples.append(Example(f"next-{cid}", messages, question, [reference], "chat", "chat"))
        if len(examples) >= n:
            break
    return examples


def find_needle(example: Example) -> tuple[int, int]:
    """Where a ``needle-chat`` example's fact stands: the message and the value's character offset."""
    value = example.answers[0]
    for k, message in enumerate(example.messages[:-1]):
        at = str(message["content"]).find(value)
        if at >= 0:
            return k, at
    raise DatasetError(f"{example.id}: the value {value!r} is in no message before the final question")


def needle_in_instructions(example: Example) -> bool:
    """True when the fact sits in its user turn's instructions (the closing paragraph or a short one),
    which the chat policy keeps whole in every mode: only the other needles test what compression drops."""
    k, at = find_needle(example)
    return any(start <= at < end for start, end in instruction_spans(str(example.messages[k]["content"])))
