from __future__ import annotations

from typing import Any

import pytest

from occ_research import InvalidInputError, compress
from occ_research._messages import default_question, normalize_prompt, text_slots


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([], "must not be empty"),
        (42, "must be a string or a list"),
        ([{"content": "hi"}], "role must be one of"),
        ([{"role": "wizard", "content": "hi"}], "role must be one of"),
        (["hi"], "must be an object"),
        ([{"role": "user", "content": None}], "content is required"),
        ([{"role": "user", "content": 3}], "must be a string, a list of parts or null"),
        ([{"role": "user", "content": [{"text": "x"}]}], "string 'type'"),
        ([{"role": "user", "content": [{"type": "text", "text": 1}]}], "text must be a string"),
        ([{"role": "assistant", "content": None, "tool_calls": {}}], "tool_calls must be a list"),
        ([{"role": ["user"], "content": "hi"}], "role must be one of"),  # found by the server's fuzzer
        (
            [{"role": "assistant", "content": None, "tool_calls": [{"function": []}]}],
            "string name and arguments",
        ),
        ([{"role": "user", "name": 3, "content": "hi"}], "name must be a string"),
    ],
)
def test_bad_messages_raise_a_typed_error(prompt: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        normalize_prompt(prompt)
    with pytest.raises(InvalidInputError):
        compress(prompt, "bm25", rate=0.5)


def test_input_is_never_mutated() -> None:
    messages = [{"role": "user", "content": "One sentence here. Another sentence there.\n\nWhat is it?"}]
    before = repr(messages)
    compress(messages, "tfidf", rate=0.3)
    assert repr(messages) == before


def test_default_question_is_last_paragraph_of_last_user_turn() -> None:
    messages = normalize_prompt(
        [
            {"role": "user", "content": "Old question?"},
            {"role": "assistant", "content": "Old answer."},
            {"role": "user", "content": [{"type": "text", "text": "Context here.\n\nWhat now?  "}]},
        ]
    )
    slots = text_slots(messages)
    located = default_question(slots)
    assert located is not None
    k, (start, end) = located
    assert slots[k].text[start:end] == "What now?"
