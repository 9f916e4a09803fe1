from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from occ_research import count_tokens, encoding_name_for_model
from occ_research._tokens import ENCODING_SHA256, TokenMemo, get_encoding, surely_fewer_tokens, token_ends
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


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII. Two sentences.\n\nA paragraph after a blank line.",
        "Accents: café, naïve, Zürich. Curly “quotes” and an em dash — here.",
        "Emoji split across tokens: 🎉🧪🦜 and 中文字符的句子。日本語のテキスト！",
        "Special-token text stays text: <|endoftext|> <|im_start|>",
        "",
    ],
)
def test_token_ends_locate_every_token(model: str, text: str) -> None:
    """One pass gives each token's end as a character offset: the character that holds its last byte."""
    encoding = get_encoding(encoding_name_for_model(model))
    tokens = encoding.encode_ordinary(text)
    ends = token_ends(text, model)
    assert len(ends) == len(tokens)
    raw, position, expected = text.encode(), 0, []
    for token in tokens:
        position += len(encoding.decode_single_token_bytes(token))
        # characters that start before the token's end: a character cut by it counts as its last
        expected.append(sum(1 for byte in raw[:position] if byte & 0xC0 != 0x80))
    assert ends.tolist() == expected


def test_a_memo_encodes_a_text_once_and_records_its_count() -> None:
    memo = TokenMemo("gpt-4o")
    text = "Where each token ends is computed once. " * 20
    first = memo.ends(text)
    assert memo.ends(text) is first
    assert memo[text] == count_tokens(text, "gpt-4o") == len(first)


_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant"]),
        "content": st.text(st.characters(exclude_categories=()), max_size=60),  # lone surrogates too
    },
    optional={"name": st.text(min_size=1, max_size=8)},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_MESSAGE, min_size=1, max_size=4), st.integers(0, 120), st.sampled_from(["gpt-4", "gpt-4o"]))
def test_surely_fewer_tokens_never_says_so_of_a_prompt_that_is_not(
    messages: list[dict[str, str]], limit: int, model: str
) -> None:
    """The bound the server uses to skip short prompts without counting them: whenever it says "fewer",
    the exact count agrees (any text: emoji, CJK, combining marks, lone surrogates)."""
    if surely_fewer_tokens(messages, limit):
        assert count_tokens(messages, model) < limit


def test_surely_fewer_tokens_knows_a_short_prompt_and_declines_a_long_one() -> None:
    short = [{"role": "user", "content": "Say hi"}]
    assert surely_fewer_tokens(short, 400) and not surely_fewer_tokens(short, 10)
    assert not surely_fewer_tokens([{"role": "user", "content": "x" * 1_000_000}], 400)  # stops early
    wide = [{"role": "user", "content": "\u4f60\u597d" * 60}]  # 120 characters, 360 bytes
    assert not surely_fewer_tokens(wide, 300)  # the characters alone would have said "fewer"
