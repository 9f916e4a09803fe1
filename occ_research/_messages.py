"""OpenAI chat messages: validation, the text slots compression may touch, and the default question.

A *slot* is one string the model reads as message text: a string ``content`` or the ``text`` of one
``{"type": "text"}`` content part. Everything else in a message (role, name, tool_calls, tool_call_id,
images, audio, unknown keys) is never touched: compression rewrites slots and nothing more.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidInputError

Message = dict[str, Any]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
INSTRUCTION_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True, slots=True)
class Slot:
    message: int  # index of the message
    part: int | None  # index of the content part, None for string content
    role: str
    text: str


def normalize_prompt(prompt: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """A validated deep copy of the messages; a plain string becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    validate_messages(prompt)
    return [copy.deepcopy(dict(m)) for m in prompt]


def validate_messages(messages: object) -> None:
    """Raise ``InvalidInputError`` unless ``messages`` is a non-empty list of valid chat messages."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InvalidInputError(
            f"prompt must be a string or a list of messages, got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidInputError("messages must not be empty")
    for i, message in enumerate(messages):
        _validate_message(i, message)


def _validate_message(i: int, message: object) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {type(message).__name__}")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidInputError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}")
    content = message.get("content")
    if content is None:
        if role != "assistant":
            raise InvalidInputError(f"{where}.content is required for role {role!r}")
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                raise InvalidInputError(f"{where}.content[{j}] must be an object with a string 'type'")
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                raise InvalidInputError(f"{where}.content[{j}].text must be a string")
    elif not isinstance(content, str):
        raise InvalidInputError(f"{where}.content must be a string, a list of parts or null")
    for key in ("name", "tool_call_id"):
        if key in message and not isinstance(message[key], str):
            raise InvalidInputError(f"{where}.{key} must be a string")
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise InvalidInputError(f"{where}.tool_calls must be a list")
    for j, call in enumerate(calls or ()):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not all(
            isinstance(function.get(k), str) for k in ("name", "arguments")
        ):
            raise InvalidInputError(
                f"{where}.tool_calls[{j}] must have a function with string name and arguments"
            )


def text_slots(messages: Sequence[Message]) -> list[Slot]:
    slots = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            slots.append(Slot(i, None, message["role"], content))
        elif isinstance(content, list):
            slots.extend(
                Slot(i, j, message["role"], part["text"])
                for j, part in enumerate(content)
                if part.get("type") == "text"
            )
    return slots


def replace_texts(messages: Sequence[Message], slots: Sequence[Slot], texts: Sequence[str]) -> list[Message]:
    """A copy of ``messages`` with each slot's text replaced; messages without changes are shared."""
    out = list(messages)
    for slot, text in zip(slots, texts, strict=True):
        if text == slot.text:
            continue
        if out[slot.message] is messages[slot.message]:
            out[slot.message] = copy.deepcopy(messages[slot.message])
        if slot.part is None:
            out[slot.message]["content"] = text
        else:
            out[slot.message]["content"][slot.part]["text"] = text
    return out


def last_paragraph_span(text: str) -> tuple[int, int]:
    """The span of the text after the last blank line (all of it when there is none), trimmed."""
    end = len(text.rstrip())
    cut = max(text.rfind("\n\n", 0, end), text.rfind("\n \n", 0, end))
    start = 0 if cut < 0 else cut + 2
    start += len(text[start:end]) - len(text[start:end].lstrip())
    return start, end


def default_question(slots: Sequence[Slot]) -> tuple[int, tuple[int, int]] | None:
    """Slot index and span of the final user question: the last paragraph of the last user turn."""
    for k in range(len(slots) - 1, -1, -1):
        if slots[k].role == "user" and slots[k].text.strip():
            return k, last_paragraph_span(slots[k].text)
    return None


def find_question(slots: Sequence[Slot], question: str) -> tuple[int, tuple[int, int]] | None:
    """The last verbatim occurrence of ``question``: in user turns first (latest first), then elsewhere."""
    needle = question.strip()
    if not needle:
        return None
    latest_first = sorted(range(len(slots)), key=lambda k: (slots[k].role != "user", -k))
    for k in latest_first:
        at = slots[k].text.rfind(needle)
        if at >= 0:
            return k, (at, at + len(needle))
    return None
