"""The chat policy: which text of a prompt may be compressed, decided once for every strategy.

A prompt *forms a conversation* when it has more than one user message, or any assistant, tool or function
message. A conversation follows these rules (``ChatPolicy``); any other prompt (a plain text, or system
messages with one user message: a single-turn RAG or document prompt) is compressed as a document, with the
question (the last paragraph of the user turn) protected.

- System and developer messages stay as they are (unless ``compress_system``).
- A user turn keeps its instructions whole: its closing paragraph and every short paragraph (under
  ``DOCUMENT_WORDS`` words), which takes in an opening instruction ("Summarise this:"); only long
  paragraphs that are not the last (a pasted document, retrieved passages) may be compressed. So a user
  turn is never emptied, and the final one keeps its instructions, not only its last paragraph.
- The exchange in progress and the ``keep_recent`` exchanges before it stay verbatim (an exchange begins
  at each user message and at each assistant message that calls tools), except the final user message,
  whose documents may be compressed.
- What is compressed is what is long and old: earlier assistant turns, tool outputs, documents pasted into
  earlier user turns.
- Messages up to the last ``cache_control`` breakpoint (Anthropic style, on a message or one of its content
  parts) and the first ``frozen_messages`` are never changed, whatever the mode.

In cache-stable mode (``cache_stable=True`` on ``compress``) a message has two forms only: verbatim (while
recent or frozen) or its compressed form, which depends on messages 0..i alone. User turns then always take
their compressed form (instructions whole, documents compressed), recent or not, so a user turn is compressed
once and sent the same way in every later turn; and the rules above apply to any list of messages, since
whether a later turn will come cannot be known.

The decisions are per message (``Mode``) and become per-slot protections (``SlotPlan``) on the current text,
so a pipeline's later step applies the same decisions to its predecessor's output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._messages import INSTRUCTION_ROLES, Message, Slot, find_question, last_paragraph_span
from ..exceptions import InvalidParameterError
from ._order import NUMBERED_PASSAGE

#: a paragraph of at least this many words, not the closing one, reads as a document, not an instruction
DOCUMENT_WORDS = 50
#: what a message whose text was all removed says instead (never an empty message)
OMITTED = "[omitted]"

Mode = Literal["fixed", "free", "user"]  # verbatim; compressible; compressible documents of a user turn
Span = tuple[int, int]
_BLANK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class ChatPolicy:
    """How conversations are compressed (see the module docstring); the defaults are the chat policy.

    ``conversation``: None detects it; True or False forces the chat rules on or off. ``keep_recent``:
    exchanges kept verbatim. ``frozen_messages``: the first messages that are never changed (a client's
    cached prefix). ``json_array_items``: when > 0, JSON arrays in tool outputs longer than this keep their
    first and last items and say how many were removed (0: off, tool outputs byte-identical).
    """

    conversation: bool | None = None
    keep_recent: int = 2
    frozen_messages: int = 0
    json_array_items: int = 0

    def validate(self) -> None:
        for name in ("keep_recent", "frozen_messages", "json_array_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidParameterError(f"chat policy: {name} must be a non-negative integer")
        if self.json_array_items == 1:
            raise InvalidParameterError("chat policy: json_array_items keeps first and last: use 0 or >= 2")
        if self.conversation not in (None, True, False):
            raise InvalidParameterError("chat policy: conversation must be None, True or False")


@dataclass(frozen=True, slots=True)
class SlotPlan:
    free: bool  # False: the slot's text stays as it is
    protected: tuple[Span, ...] = ()  # spans of a free slot that stay as they are
    role: str = ""
    shorten_json: int = 0  # json_array_items for a free tool output (0: off)


FIXED = SlotPlan(False)


def forms_conversation(messages: Sequence[Mapping[str, Any]]) -> bool:
    """More than one user message, or any assistant, tool or function message."""
    users = sum(1 for m in messages if m.get("role") == "user")
    return users > 1 or any(m.get("role") in ("assistant", "tool", "function") for m in messages)


def frozen_count(messages: Sequence[Mapping[str, Any]], policy: ChatPolicy) -> int:
    """How many leading messages are never changed: the client's count, or up to the last breakpoint."""
    last = -1
    for i, message in enumerate(messages):
        content = message.get("content")
        parts = content if isinstance(content, list) else []
        if "cache_control" in message or any(isinstance(p, Mapping) and "cache_control" in p for p in parts):
            last = i
    return max(policy.frozen_messages, last + 1)


def message_modes(
    messages: Sequence[Message],
    policy: ChatPolicy,
    *,
    chat: bool,
    cache_stable: bool,
    compress_system: bool,
) -> tuple[Mode, ...]:
    """Per message: kept as it is, compressible, or a user turn whose documents are compressible."""
    frozen = frozen_count(messages, policy)
    roles = [str(m.get("role")) for m in messages]
    users = [i for i, role in enumerate(roles) if role == "user"]
    final_user = users[-1] if users else -1
    starts = [
        i
        for i, m in enumerate(messages)
        if roles[i] == "user" or (roles[i] == "assistant" and m.get("tool_calls"))
    ]
    # the exchange in progress and the keep_recent exchanges before it
    recent_from = starts[-policy.keep_recent - 1] if len(starts) > policy.keep_recent else 0
    modes: list[Mode] = []
    for i, role in enumerate(roles):
        mode: Mode
        if i < frozen or (role in INSTRUCTION_ROLES and not compress_system):
            mode = "fixed"
        elif not chat:
            mode = "free"
        elif role == "user":
            mode = "user" if cache_stable or i == final_user or i < recent_from else "fixed"
        else:
            mode = "fixed" if i >= recent_from else "free"
        modes.append(mode)
    return tuple(modes)


def _paragraphs(text: str) -> list[tuple[Span, bool]]:
    """Each paragraph of a user turn (trimmed) and whether it is an instruction: the closing one and the
    short ones, except a short retrieved passage (one that opens with a numbered header: ``Document [3]``,
    ``[3]``)."""
    spans: list[Span] = []
    start = 0
    for match in [*_BLANK.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        if match:
            start = match.end()
    return [
        (
            span,
            n == len(spans) - 1
            or (
                len(text[span[0] : span[1]].split()) < DOCUMENT_WORDS
                and not NUMBERED_PASSAGE.match(text[span[0] : span[1]])
            ),
        )
        for n, span in enumerate(spans)
    ]


def instruction_spans(text: str) -> list[Span]:
    """The paragraphs of a user turn that are instructions, kept whole (see ``_paragraphs``)."""
    return [span for span, instruction in _paragraphs(text) if instruction]


def instructions_of(text: str) -> str:
    """What a user turn's exchange is ranked against: its instructions after its last document (the
    question follows the material it is about; an opening "use only the search results below" would only
    blur the query), or all of them when the turn holds no document."""
    paragraphs = _paragraphs(text)
    documents = [n for n, (_, instruction) in enumerate(paragraphs) if not instruction]
    after = paragraphs[documents[-1] + 1 :] if documents else paragraphs
    return "\n\n".join(text[s:e] for (s, e), _ in after)


def slot_plans(
    slots: Sequence[Slot],
    modes: Sequence[Mode],
    question: tuple[int, Span] | None,
    policy: ChatPolicy,
) -> tuple[SlotPlan, ...]:
    """The per-slot protections of the current texts, from the per-message decisions."""
    plans = []
    for k, slot in enumerate(slots):
        mode = modes[slot.message]
        if mode == "fixed":
            plans.append(FIXED)
            continue
        protected = list(instruction_spans(slot.text)) if mode == "user" else []
        if question is not None and question[0] == k:
            protected.append(question[1])
        if mode == "user" and not compressible_pieces(slot.text, SlotPlan(True, tuple(protected))):
            plans.append(FIXED)
            continue
        shorten = policy.json_array_items if slot.role == "tool" else 0
        plans.append(SlotPlan(True, tuple(protected), slot.role, shorten))
    return tuple(plans)


def compressible_pieces(text: str, plan: SlotPlan) -> list[str]:
    """The parts of a slot's text that its plan lets change (nothing for a fixed slot)."""
    if not plan.free:
        return []
    pieces, pos = [], 0
    for start, end in sorted(plan.protected):
        if start > pos:
            pieces.append(text[pos:start])
        pos = max(pos, end)
    pieces.append(text[pos:])
    return [p for p in pieces if p.strip()]


def exchange_questions(
    messages: Sequence[Message], slots: Sequence[Slot], question: str | None
) -> tuple[str, ...]:
    """Per message, what it is ranked against in cache-stable mode: the instructions of the user turn it
    belongs to (the latest user message up to it), or the caller's question."""
    if question is not None:
        return tuple(question for _ in messages)
    text_of: dict[int, str] = {}
    for slot in slots:
        if slot.role == "user":
            text_of[slot.message] = (text_of.get(slot.message, "") + "\n\n" + slot.text).strip()
    out: list[str] = []
    current = ""
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            current = instructions_of(text_of.get(i, ""))
        out.append(current)
    return tuple(out)


def chat_question(slots: Sequence[Slot], question: str | None) -> tuple[str, tuple[int, Span] | None]:
    """The question of a conversation: the caller's, or the final user turn's instructions; and where the
    text that must survive verbatim stands (the caller's question, or the closing paragraph)."""
    if question is not None:
        return question, find_question(slots, question)
    for k in range(len(slots) - 1, -1, -1):
        if slots[k].role == "user" and slots[k].text.strip():
            return instructions_of(slots[k].text), (k, last_paragraph_span(slots[k].text))
    return "", None
