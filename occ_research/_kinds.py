"""Kinds of prompt, and telling a prompt's kind from its structure alone.

An evaluation elects a winner per kind (``evals/_select.py``: datasets declare their kind) and the server
applies the winner of the kind it sees. The server has no dataset label, only the messages, so the kind is
read from their structure, in this order:

- ``chat``: the messages form a conversation (more than one user turn, or any assistant or tool message);
- ``structured``: protected blocks (JSON, fenced code, tables) make up most of the text;
- ``few-shot``: the text repeats question/answer markers (``Q:``/``A:``, ``Question:``/``Answer:``,
  ``Input:``/``Output:``) at least three times: worked examples before a new case;
- ``rag``: the text holds several blank-line separated passages (retrieved documents, then a question);
- ``long-document``: anything else (one long text and an instruction).

The rules are deliberately few and structural; a prompt that matches none is ``long-document``, and a kind
with no evaluated winner is forwarded uncompressed, so a wrong guess costs savings, not correctness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._text import protected_blocks
from .strategies._policy import forms_conversation

#: kinds of prompt: a winner is elected per kind, and the server classifies requests into the same kinds
KINDS = ("rag", "long-document", "chat", "few-shot", "structured")

_SHOT_MARKER = re.compile(r"^[ \t]*(?:Q|A|Question|Answer|Input|Output)[ \t]*:", re.MULTILINE | re.IGNORECASE)
_PASSAGE_BREAK = re.compile(r"\n[ \t]*\n")
MIN_PASSAGES = 3  # a question after fewer blocks than this reads as a document with an instruction
MIN_SHOT_MARKERS = 6  # three worked examples, a question and an answer marker each


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_kind(messages: Sequence[Mapping[str, Any]]) -> str:
    """The kind of a chat prompt (one of ``KINDS``), from its structure (see the module docstring)."""
    if forms_conversation(messages):
        return "chat"
    text = "\n\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
    if not text.strip():
        return "long-document"
    protected = sum(end - start for start, end in protected_blocks(text))
    if protected * 2 > len(text.strip()):
        return "structured"
    if len(_SHOT_MARKER.findall(text)) >= MIN_SHOT_MARKERS:
        return "few-shot"
    passages = [p for p in _PASSAGE_BREAK.split(text) if p.strip()]
    return "rag" if len(passages) >= MIN_PASSAGES else "long-document"
