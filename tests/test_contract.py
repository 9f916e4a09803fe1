"""The strategy contract, checked for every registered strategy on generated and adversarial prompts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from occ_research._messages import default_question, normalize_prompt, text_slots
from occ_research._text import protected_blocks
from occ_research._tokens import count_tokens
from occ_research.strategies import CompressionResult, Strategy
from occ_research.strategies._policy import instruction_spans

from .conftest import STRATEGY_NAMES, build

WORDS = [
    "alpha",
    "Beta",
    "gamma",
    "données",
    "über",
    "東京",
    "数据",
    "🙂",
    "x=1",
    "3.14",
    "e.g.",
    "Dr.",
    "URL",
]


def check_contract(
    strategy: Strategy, prompt: Any, budget: dict[str, Any], model: str = "gpt-4o"
) -> CompressionResult:
    """Compress ``prompt`` and assert every guarantee of the contract; returns the result."""
    before = copy.deepcopy(prompt)
    result = strategy.compress(prompt, model=model, seed=7, **budget)
    assert prompt == before, "the caller's prompt was mutated"

    original = normalize_prompt(prompt)
    out = result.messages
    # honest numbers, never more tokens than the input
    assert result.original_tokens == count_tokens(original, model)
    assert result.compressed_tokens == count_tokens(out, model)
    assert result.compressed_tokens <= result.original_tokens
    json.dumps(result.stats())

    # no message dropped, reordered or changed in role; everything but text byte-identical
    assert len(out) == len(original)
    for old, new in zip(original, out, strict=True):
        assert old.keys() == new.keys()
        assert {k: v for k, v in old.items() if k != "content"} == {
            k: v for k, v in new.items() if k != "content"
        }
        if old["role"] in ("system", "developer"):
            assert new == old
        if isinstance(old["content"], list):
            assert len(new["content"]) == len(old["content"])
            for a, b in zip(old["content"], new["content"], strict=True):
                assert {k: v for k, v in a.items() if k != "text"} == {
                    k: v for k, v in b.items() if k != "text"
                }
        elif not isinstance(old["content"], str):
            assert new["content"] == old["content"]

    # protected blocks and the question survive verbatim, in their own slot (an exact repeat of a block
    # may point to an earlier copy: that copy is still there); no text becomes empty
    old_slots, new_slots = text_slots(original), text_slots(out)
    assert len(old_slots) == len(new_slots)
    for k, (old_slot, new_slot) in enumerate(zip(old_slots, new_slots, strict=True)):
        assert new_slot.text.strip() or not old_slot.text.strip(), "a message became empty"
        for start, end in protected_blocks(old_slot.text):
            block = old_slot.text[start:end]
            assert block in new_slot.text or any(block in s.text for s in new_slots[:k])
    if not isinstance(prompt, str) and budget.get("question") is None:
        located = default_question(old_slots)
        if located:
            k, (start, end) = located
            assert old_slots[k].text[start:end] in new_slots[k].text

    # a budget is met, or the result says why not
    if result.target_tokens is not None:
        if result.budget_met:
            assert result.compressed_tokens <= result.target_tokens
        else:
            assert result.note
            if strategy.fits_budget:
                assert "protected content" in result.note

    # same input + seed = same output
    again = strategy.compress(prompt, model=model, seed=7, **budget)
    assert again.messages == out and again.compressed_tokens == result.compressed_tokens
    return result


# -- generated prompts -----------------------------------------------------------------------------------

sentence = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(
    lambda ws: " ".join(ws).capitalize() + "."
)
paragraph = st.lists(sentence, min_size=1, max_size=6).map(" ".join)
block = st.one_of(
    paragraph,
    paragraph.map(lambda p: f"Speaker One: {p}"),
    st.just("```python\ndef f(x):\n    return x. \n```"),
    st.dictionaries(st.sampled_from(WORDS), st.integers(), min_size=1, max_size=3).map(json.dumps),
    st.just("| name | value |\n|---|---|\n| a. b | 1 |"),
)
text = st.lists(block, min_size=0, max_size=6).map("\n\n".join)
tool_call = st.fixed_dictionaries(
    {
        "id": st.just("call_1"),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": st.just("lookup"), "arguments": st.just('{"q": "x. Y"}')}),
    }
)
message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "developer"]), "content": text}
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.one_of(
                    text.map(lambda t: {"type": "text", "text": t}),
                    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
                ),
                max_size=3,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.none(),
            "tool_calls": st.lists(tool_call, min_size=1, max_size=2),
        }
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.just("call_1"), "content": text}),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "name": st.just("alice"),
            "content": text,
            "x-extra": st.just({"keep": [1, 2]}),
        }
    ),
)
messages = st.lists(message, min_size=1, max_size=5)
budgets = st.one_of(
    st.builds(lambda r: {"rate": r}, st.floats(min_value=0.05, max_value=1.0)),
    st.builds(lambda t: {"target_tokens": t}, st.integers(min_value=0, max_value=400)),
    st.just({}),
    st.builds(lambda q: {"rate": 0.5, "question": q}, st.sampled_from(["", "What about gamma?", "Beta"])),
)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.one_of(messages, text), budget=budgets)
def test_contract_on_generated_prompts(name: str, prompt: Any, budget: dict[str, Any]) -> None:
    check_contract(build(name), prompt, budget)


# -- hand-written adversarial prompts --------------------------------------------------------------------


def _adversarial() -> dict[str, Any]:
    long_text = " ".join(
        f"Sentence number {i} talks about topic {i % 37} in some detail." for i in range(16_000)
    )
    return {
        "empty": "",
        "whitespace": "  \n\n \t ",
        "one-sentence": "Only one sentence here.",
        "empty-content": [{"role": "user", "content": ""}],
        "200k-tokens": [{"role": "user", "content": long_text + "\n\nWhich topic comes up most?"}],
        "unicode": "Ünïcödé façade — naïve café. 東京は日本の首都です。大阪も大きい！🙂 Emoji 🎉 sentence. Ещё одно предложение.",
        "code-heavy": "Fix this:\n```js\nconst a = 1. \nfunction f() { return a; }\n```\nIt fails. Why?\n    indented code. Line.",
        "json-only": '{"results": [{"id": 1, "text": "Sentence one. Sentence two."}], "ok": true}',
        "markdown-table": "Results below.\n\n| model | score |\n|---|---|\n| a. | 1.0 |\n| b | 2.0 |\n\nThat is all. Thanks.",
        "tools": [
            {"role": "system", "content": "You are helpful. Be brief."},
            {"role": "user", "content": "Weather in Paris? It is for a trip. We leave soon."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": "Sunny. 24 degrees. Light wind from the west. No rain expected today.",
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this picture? It shows the river."},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
        ],
        "repeated": [
            {
                "role": "user",
                "content": "The same long paragraph appears here with many words in it. " * 3
                + "\n\nFirst question?",
            },
            {
                "role": "assistant",
                "content": "The same long paragraph appears here with many words in it. Noted.",
            },
            {
                "role": "user",
                "content": "The same long paragraph appears here with many words in it.\n\nSecond question?",
            },
        ],
    }


ADVERSARIAL = _adversarial()


@pytest.mark.parametrize("case", list(ADVERSARIAL))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_contract_on_adversarial_prompts(name: str, case: str) -> None:
    strategy = build(name)
    for budget in ({"rate": 0.3}, {"target_tokens": 25}):
        check_contract(strategy, ADVERSARIAL[case], budget)


@pytest.mark.parametrize("name", [n for n in STRATEGY_NAMES if build(n).fits_budget])
def test_budget_is_met_unless_protected_content_exceeds_it(name: str) -> None:
    prompt = [
        {"role": "system", "content": "Rules. " * 60},
        {"role": "user", "content": "Some context here. " * 40 + "\n\nQuestion?"},
    ]
    result = build(name).compress(prompt, target_tokens=50)
    assert not result.budget_met and "protected content" in result.note
    result = build(name).compress(prompt, target_tokens=200)
    assert result.budget_met and result.compressed_tokens <= 200


def test_system_messages_compress_only_when_asked() -> None:
    prompt = [
        {"role": "system", "content": "Rule one is long and detailed. " * 30},
        {"role": "user", "content": "Hi?"},
    ]
    kept = build("tfidf").compress(prompt, rate=0.5)
    assert kept.messages[0] == prompt[0]
    squeezed = build("tfidf").compress(prompt, rate=0.5, compress_system=True)
    assert len(squeezed.messages[0]["content"]) < len(prompt[0]["content"])


# -- conversations: the chat policy and cache-stable mode ------------------------------------------------

long_paragraph = st.lists(sentence, min_size=6, max_size=10).map(" ".join)  # often 50+ words: a document
user_text = st.lists(st.one_of(paragraph, long_paragraph, block), min_size=1, max_size=3).map("\n\n".join)
reply = st.one_of(
    st.lists(st.one_of(long_paragraph, block), min_size=1, max_size=3).map(
        lambda ps: [{"role": "assistant", "content": "\n\n".join(ps)}]
    ),
    st.tuples(st.lists(tool_call, min_size=1, max_size=1), text).map(
        lambda ct: [
            {"role": "assistant", "content": None, "tool_calls": ct[0]},
            {"role": "tool", "tool_call_id": "call_1", "content": ct[1]},
        ]
    ),
)
conversations = st.builds(
    lambda system, exchanges, final: [
        *([{"role": "system", "content": system}] if system else []),
        *[m for question, answer in exchanges for m in [{"role": "user", "content": question}, *answer]],
        {"role": "user", "content": final},
    ],
    st.one_of(st.just(""), paragraph),
    st.lists(st.tuples(user_text, reply), min_size=1, max_size=4),
    user_text,
)


def check_chat(original: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
    """No message emptied; every user turn keeps its instructions; the final one keeps all of them."""
    for old, new in zip(text_slots(original), text_slots(out), strict=True):
        assert new.text.strip() or not old.text.strip(), "a message became empty"
        if old.role == "user":
            for start, end in instruction_spans(old.text):
                assert old.text[start:end] in new.text, "a user turn lost an instruction"


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_chat_contract_on_generated_conversations(name: str) -> None:
    strategy = build(name)
    slow = strategy.uses_model  # seconds per compression: fewer and shorter conversations

    @settings(max_examples=3 if slow else 25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(conversation=conversations, rate=st.sampled_from([0.2, 0.5]))
    def run(conversation: list[dict[str, Any]], rate: float) -> None:
        users = [k for k, m in enumerate(conversation) if m["role"] == "user"]
        if slow and len(users) > 2:
            conversation = conversation[users[-3] :]
        budget = {} if not strategy.fits_budget and name != "pipeline" else {"rate": rate}
        check_chat(conversation, check_contract(strategy, conversation, budget).messages)
        # cache-stable: grown turn by turn, what was compressed in turn t is the same in turn t + 1
        ends = [k + 1 for k, m in enumerate(conversation) if m["role"] == "user"]
        before: list[dict[str, Any]] | None = None
        for end in ends:
            prompt = conversation[:end]
            after = strategy.compress(prompt, cache_stable=True, seed=7, **budget).messages
            check_chat(prompt, after)
            assert strategy.compress(prompt, cache_stable=True, seed=7, **budget).messages == after
            for j, sent in enumerate(before or []):
                if sent != prompt[j]:
                    assert json.dumps(after[j]) == json.dumps(sent), f"message {j} changed between turns"
            before = after

    run()
