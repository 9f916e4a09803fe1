from __future__ import annotations

import pytest

from occ_research import count_tokens, encoding_name_for_model
from occ_research._tokens import ENCODING_SHA256, get_encoding
from occ_research.exceptions import TokenizerError

# The example conversation of OpenAI's cookbook "How to count tokens with tiktoken"; the cookbook reports
# 129 prompt tokens for gpt-4 / gpt-3.5-turbo (cl100k_base) and 124 for gpt-4o (o200k_base), as the API does.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 129), ("gpt-3.5-turbo", 129), ("gpt-4o", 124)])
def test_message_counts_match_openai_cookbook(model: str, expected: int) -> None:
    assert count_tokens(COOKBOOK_MESSAGES, model=model) == expected


def test_known_text_counts() -> None:
    # token ids published in the cookbook: "tiktoken is great!" -> [83, 1609, 5963, 374, 2294, 0] (cl100k_base)
    assert get_encoding("cl100k_base").encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert count_tokens("", model="gpt-4o") == 0


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-5", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-sonnet-4-6", "cl100k_base"),
        ("gemini-2.5-pro", "cl100k_base"),
        ("local", "cl100k_base"),
    ],
)
def test_model_to_encoding(model: str, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


def test_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    get_encoding.cache_clear()
    monkeypatch.setitem(ENCODING_SHA256, "cl100k_base", "0" * 64)
    try:
        with pytest.raises(TokenizerError, match="sha256"):
            get_encoding("cl100k_base")
    finally:
        monkeypatch.undo()
        get_encoding.cache_clear()
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_encodings_are_built_without_touching_tiktoken() -> None:
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public

    get_encoding.cache_clear()
    encoding = get_encoding("o200k_base")
    assert openai_public.load_tiktoken_bpe is load_tiktoken_bpe  # tiktoken's own module is left as it was
    assert encoding.name == "o200k_base"
    assert encoding.special_tokens_set == {"<|endoftext|>", "<|endofprompt|>"}
    assert encoding.encode("hello world") == [24912, 2375]


def test_unknown_encoding() -> None:
    with pytest.raises(TokenizerError):
        get_encoding("p50k_base")


def test_tool_calls_and_parts_are_counted() -> None:
    plain = [{"role": "user", "content": "hello there"}]
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello there"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        }
    ]
    assert count_tokens(parts) == count_tokens(plain)
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "weather in Paris"}'},
            }
        ],
    }
    assert count_tokens([call]) > count_tokens([{"role": "assistant", "content": None}])
