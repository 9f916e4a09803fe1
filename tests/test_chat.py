"""The chat policy, cache-stable mode and tool loops (issue 10), on written and real ShareGPT chats."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from occ_research import ChatPolicy, InvalidParameterError, MessageCache, compress
from occ_research.evals._datasets import _rows
from occ_research.strategies import Pipeline, forms_conversation, make_strategy
from occ_research.strategies._policy import OMITTED, instruction_spans, instructions_of

FILLER = (
    "The committee reviewed the budget line by line and found several items that needed more detail. "
    "Travel costs rose sharply in the second quarter because of the conference season. "
    "Hardware purchases were delayed until the new supplier contract was signed. "
    "Staff costs stayed flat, although two positions remained open for most of the year. "
)


def chat(turns: int = 7) -> list[dict[str, Any]]:
    """A conversation whose replies are long and whose user turns are short instructions."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful analyst."}]
    for t in range(turns):
        messages.append({"role": "user", "content": f"Tell me about item {t}. Keep it short."})
        messages.append({"role": "assistant", "content": f"Item {t} in {1990 + t}. " + FILLER * 3})
    messages.append(
        {
            "role": "user",
            "content": "Summarise what we discussed about item 3.\n\nWhich year was most important?",
        }
    )
    return messages


def sharegpt_chats(n: int, min_messages: int = 6) -> list[list[dict[str, Any]]]:
    chats = []
    for row in _rows("sharegpt/sharegpt_v3_first3000_multiturn.jsonl.gz", limit=400):
        turns = [
            {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
            for t in row["conversations"]
            if t["from"] in ("human", "gpt")
        ]
        last_user = max((k for k, t in enumerate(turns) if t["role"] == "user"), default=-1)
        if last_user + 1 >= min_messages:
            chats.append(turns[: last_user + 1])
        if len(chats) >= n:
            break
    return chats


def instructions(text: str) -> list[str]:
    return [text[s:e] for s, e in instruction_spans(text)]


def test_what_forms_a_conversation() -> None:
    assert not forms_conversation([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    assert forms_conversation([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert forms_conversation([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    assert forms_conversation([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])


@pytest.mark.parametrize("name", ["bm25", "tfidf", "truncate", "random", "gzip"])
def test_the_issue_chat_keeps_user_turns_and_the_final_instruction(name: str) -> None:
    messages = chat()
    result = compress(messages, name, rate=0.25)
    out = result.messages
    assert all(m["content"].strip() for m in out)
    assert [m for m in out if m["role"] == "user"] == [m for m in messages if m["role"] == "user"]
    assert out[-1] == messages[-1]  # both paragraphs, not only the last
    assert out[-3:] == messages[-3:] and out[-5:] == messages[-5:]  # the last two exchanges verbatim
    assert result.compressed_tokens < result.original_tokens * 0.6
    old_replies = [k for k, m in enumerate(messages[:-5]) if m["role"] == "assistant"]
    kept = sum(len(out[k]["content"]) for k in old_replies)
    assert kept < sum(len(messages[k]["content"]) for k in old_replies) // 2  # old replies are what shrinks


def test_keep_recent_counts_exchanges() -> None:
    messages = chat()
    one = compress(messages, "bm25", rate=0.25, chat=ChatPolicy(keep_recent=1)).messages
    assert one[-3:] == messages[-3:] and one[-4] != messages[-4]
    none = compress(messages, "bm25", rate=0.25, chat=ChatPolicy(keep_recent=0)).messages
    assert none[-2] != messages[-2] and none[-1] == messages[-1]
    four = compress(messages, "bm25", rate=0.25, chat=ChatPolicy(keep_recent=4)).messages
    assert four[-9:] == messages[-9:] and four[2] != messages[2]


def test_a_message_with_nothing_worth_keeping_becomes_a_marker() -> None:
    messages = chat()
    out = compress(messages, "truncate", rate=0.1, side="tail").messages
    assert OMITTED in [m["content"] for m in out]
    assert all(m["content"].strip() for m in out)


def test_documents_in_user_turns_are_compressed_and_instructions_kept() -> None:
    document = "\n\n".join(FILLER * 2 for _ in range(4))
    messages = [
        {"role": "user", "content": "I have a question about a report."},
        {"role": "assistant", "content": "Sure, send it."},
        {"role": "user", "content": f"Read this report.\n\n{document}\n\nWhat rose in the second quarter?"},
    ]
    result = compress(messages, "bm25", rate=0.3)
    final = result.messages[-1]["content"]
    assert final.startswith("Read this report.") and final.endswith("What rose in the second quarter?")
    assert len(final) < len(messages[-1]["content"]) // 2
    assert "Travel costs rose sharply" in final


def test_a_single_turn_rag_prompt_compresses_as_before() -> None:
    passages = "\n\n".join(f"Document [{i}] " + FILLER for i in range(6))
    messages = [
        {"role": "system", "content": "Answer from the documents."},
        {"role": "user", "content": f"Answer the question.\n\n{passages}\n\nWhy did travel costs rise?"},
    ]
    as_document = compress(messages, "bm25", rate=0.25, chat=ChatPolicy(conversation=False))
    default = compress(messages, "bm25", rate=0.25)
    assert default.messages == as_document.messages
    assert default.compressed_tokens <= default.original_tokens * 0.25


@pytest.mark.parametrize("cache_stable", [False, True])
def test_in_a_conversation_the_rate_applies_to_what_may_change(cache_stable: bool) -> None:
    """Instructions that fill most of an old user turn are kept on top of the rate: the document pasted
    between them keeps its share instead of paying for them (it used to lose every word at rate 0.5)."""
    document = FILLER * 6
    instructions_text = "\n\n".join(f"Step {k}: check the figures of section {k} twice." for k in range(24))
    messages = [
        {"role": "user", "content": f"{instructions_text}\n\n{document}\n\nThanks."},
        {"role": "assistant", "content": "Noted. " + FILLER * 4},
        {"role": "user", "content": "What rose in the second quarter?"},
    ]
    policy = ChatPolicy(keep_recent=0)
    out = compress(messages, "bm25", rate=0.5, chat=policy, cache_stable=cache_stable).messages
    first = out[0]["content"]
    assert all(f"Step {k}:" in first for k in range(24))
    kept = len(first) - len(instructions_text) - len("Thanks.")
    assert 0.3 * len(document) < kept <= 0.6 * len(document)


def test_short_numbered_passages_are_documents_not_instructions() -> None:
    """A retrieved passage is text to compress however short it is; the question ranked against is what
    follows the last passage, not the opening instruction."""
    passages = "\n\n".join(f"Document [{i}](Title: Report {i}) " + FILLER[:120] for i in range(10))
    text = f"Use only the documents below.\n\n{passages}\n\nQuestion: why were hardware purchases delayed?"
    assert instructions(text) == ["Use only the documents below.", text.rsplit("\n\n", 1)[1]]
    assert instructions_of(text) == "Question: why were hardware purchases delayed?"
    result = compress([{"role": "user", "content": text}], "bm25", rate=0.5, cache_stable=True)
    assert result.compressed_tokens < 0.6 * result.original_tokens


@pytest.mark.parametrize("name", ["bm25", "dedup", "truncate", "pipeline"])
def test_real_chats_keep_every_user_turn_and_the_final_instructions(name: str) -> None:
    for messages in sharegpt_chats(15):
        out = compress(messages, name, rate=None if name == "dedup" else 0.25).messages
        for old, new in zip(messages, out, strict=True):
            assert new["content"].strip() or not old["content"].strip()
            if old["role"] == "user":
                assert all(piece in new["content"] for piece in instructions(old["content"]))
        assert all(piece in out[-1]["content"] for piece in instructions(messages[-1]["content"]))


def grown(messages: list[dict[str, Any]], name: str, **options: Any) -> list[list[dict[str, Any]]]:
    """The compressed prompt of every turn of a conversation grown one user turn at a time."""
    ends = [k + 1 for k, m in enumerate(messages) if m["role"] == "user"]
    return [compress(messages[:end], name, cache_stable=True, **options).messages for end in ends]


def assert_prefix_stable(messages: list[dict[str, Any]], turns: list[list[dict[str, Any]]]) -> None:
    for before, after in itertools.pairwise(turns):
        for j, sent in enumerate(before):
            if sent != messages[j]:  # compressed in turn t: byte-identical in turn t + 1
                assert json.dumps(after[j]) == json.dumps(sent), j


@pytest.mark.parametrize("name", ["bm25", "tfidf", "dedup", "truncate", "random", "pipeline"])
def test_cache_stable_mode_resends_compressed_messages_byte_identical(name: str) -> None:
    rate = None if name == "dedup" else 0.3
    for messages in [chat(), *sharegpt_chats(6)]:
        turns = grown(messages, name, rate=rate)
        assert_prefix_stable(messages, turns)
        for old, new in zip(messages, turns[-1], strict=True):
            assert new["content"].strip() or not old["content"].strip()
            if old["role"] == "user":
                assert all(piece in new["content"] for piece in instructions(old["content"]))


def test_cache_stable_ranks_a_reply_against_its_own_question() -> None:
    messages = chat()
    early = compress(messages[:9], "bm25", rate=0.3, cache_stable=True).messages
    late = compress(messages, "bm25", rate=0.3, cache_stable=True).messages
    assert late[2] == early[2] != messages[2]  # the same whatever the latest question asks


def test_cache_stable_takes_a_rate_not_a_whole_prompt_budget() -> None:
    with pytest.raises(InvalidParameterError, match="rate"):
        compress(chat(), "bm25", target_tokens=300, cache_stable=True)


def test_message_cache_compresses_a_history_once() -> None:
    cache = MessageCache(64)
    messages = chat()
    first = compress(messages[:-2], "bm25", rate=0.3, cache_stable=True, cache=cache)
    misses = cache.misses
    second = compress(messages, "bm25", rate=0.3, cache_stable=True, cache=cache)
    assert cache.hits > 0 and cache.misses - misses < misses  # only what aged out is compressed anew
    assert second.messages[:4] == first.messages[:4]
    uncached = compress(messages, "bm25", rate=0.3, cache_stable=True)
    assert uncached.messages == second.messages
    small = MessageCache(2)
    compress(messages, "bm25", rate=0.3, cache_stable=True, cache=small)
    assert len(small) == 2
    with pytest.raises(InvalidParameterError):
        MessageCache(0)


@pytest.mark.parametrize("cache_stable", [False, True])
def test_messages_up_to_a_breakpoint_or_the_frozen_count_never_change(cache_stable: bool) -> None:
    messages = chat()
    marked = [dict(m) for m in messages]
    marked[6] = {**marked[6], "cache_control": {"type": "ephemeral"}}
    out = compress(marked, "bm25", rate=0.25, cache_stable=cache_stable).messages
    assert out[:7] == marked[:7] and out[8] != marked[8]
    parts = [dict(m) for m in messages]
    parts[4] = {**parts[4], "content": [{"type": "text", "text": parts[4]["content"], "cache_control": {}}]}
    out = compress(parts, "bm25", rate=0.25, cache_stable=cache_stable).messages
    assert out[:5] == parts[:5] and out[6] != parts[6]
    frozen = compress(
        messages, "bm25", rate=0.25, chat=ChatPolicy(frozen_messages=9), cache_stable=cache_stable
    )
    assert frozen.messages[:9] == messages[:9] and frozen.messages[10] != messages[10]
    with pytest.raises(InvalidParameterError):
        compress(messages, "bm25", rate=0.25, chat=ChatPolicy(frozen_messages=-1))


def tool_loop(rows: int = 40) -> list[dict[str, Any]]:
    result = json.dumps(
        {"results": [{"id": i, "name": f"row {i}", "score": i / 10} for i in range(rows)]}, indent=2
    )

    def call(n: int) -> dict[str, Any]:
        function = {"name": "search", "arguments": '{"q": "rows"}'}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": f"c{n}", "type": "function", "function": function}],
        }

    return [
        {"role": "user", "content": "Find the rows and summarise them."},
        call(1),
        {"role": "tool", "tool_call_id": "c1", "content": result},
        call(2),
        {"role": "tool", "tool_call_id": "c2", "content": result},
        {"role": "assistant", "content": "I searched twice. " + FILLER},
        {"role": "user", "content": "Thanks. Now the top row?"},
        call(3),
        {"role": "tool", "tool_call_id": "c3", "content": '{"top": 39}'},
        call(4),
        {"role": "tool", "tool_call_id": "c4", "content": '{"name": "row 39"}'},
    ]


@pytest.mark.parametrize("cache_stable", [False, True])
def test_a_repeated_json_tool_output_becomes_a_marker_naming_the_first(cache_stable: bool) -> None:
    messages = tool_loop()
    out = compress(messages, "dedup", cache_stable=cache_stable).messages
    assert out[2] == messages[2]
    assert out[4]["content"] == "[repeated text removed: see message 3]"
    kept = compress(messages, "dedup", blocks=False, cache_stable=cache_stable).messages
    assert kept[4] == messages[4]


def test_long_json_arrays_in_tool_outputs_shorten_only_when_asked() -> None:
    messages = tool_loop()
    off = compress(messages, "identity")
    assert off.messages == messages
    on = compress(messages, "identity", chat=ChatPolicy(json_array_items=4))
    shortened = json.loads(on.messages[2]["content"])["results"]
    assert [row["id"] for row in shortened if isinstance(row, dict)] == [0, 1, 38, 39]
    assert shortened[2] == "[36 items removed]" and len(shortened) == 5
    assert on.messages[-1] == messages[-1]  # recent tool outputs stay verbatim
    assert on.compressed_tokens < off.compressed_tokens


def test_a_pipeline_applies_the_same_policy_at_every_step() -> None:
    messages = chat()
    out = compress(messages, Pipeline([make_strategy("dedup"), make_strategy("tfidf")]), rate=0.3).messages
    assert out[-5:] == messages[-5:] and all(m["content"].strip() for m in out)
