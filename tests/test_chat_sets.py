"""The chat sets built from real ShareGPT conversations: where the needle goes and what stays real."""

from __future__ import annotations

import pytest

from occ_research import ChatPolicy, compress
from occ_research._messages import Message
from occ_research.evals import DATASETS, Example, load_examples
from occ_research.evals._chat_sets import (
    FACTS,
    VAGUE_QUESTION,
    find_needle,
    needle_in_instructions,
    sharegpt_conversations,
    truncate_tokens,
)
from occ_research.evals._metrics import normalize_answer
from occ_research.exceptions import DatasetError


@pytest.fixture(scope="module")
def needles() -> list[Example]:
    return load_examples("needle-chat", n=30)


def original(example: Example) -> list[Message]:
    """The real conversation an example was built from, cut where the example's history ends."""
    cid = example.id.removeprefix("needle-").rsplit("-m", 1)[0]
    (conversation,) = [c for c in sharegpt_conversations() if c.id == cid]
    return list(conversation.messages[: len(example.messages) - 1])


def test_registered_as_chat_sets() -> None:
    needle, nxt = DATASETS.get("needle-chat"), DATASETS.get("sharegpt-next")
    assert (needle.kind, needle.metric, needle.retention) == ("chat", "contains", True)
    assert (nxt.kind, nxt.task, nxt.retention) == ("chat", "chat", False)


def test_needle_sits_in_an_old_user_turn(needles: list[Example]) -> None:
    assert len(needles) == 30
    for example in needles:
        users = [k for k, m in enumerate(example.messages) if m["role"] == "user"]
        turn, _ = find_needle(example)
        # a user turn before the last two real ones and the final question: outside keep_recent = 2
        assert turn in users[:-3]
        assert example.id.endswith(f"-m{turn}")


def test_needle_is_unique_and_asked_for_last(needles: list[Example]) -> None:
    for example in needles:
        (value,) = example.answers
        everything = normalize_answer(" ".join(str(m["content"]) for m in example.messages))
        assert f" {everything} ".count(f" {normalize_answer(value)} ") == 1
        last = example.messages[-1]
        assert last == {"role": "user", "content": example.question}
        assert example.question in {fact.question for fact in FACTS}
        assert value not in example.question
        assert example.messages[-2]["role"] == "assistant"  # the real chat ends with a reply


def test_real_text_unchanged_but_for_the_sentence(needles: list[Example]) -> None:
    for example in needles:
        real = original(example)
        turn, _ = find_needle(example)
        planted = example.messages[:-1]
        assert [m for k, m in enumerate(planted) if k != turn] == [m for k, m in enumerate(real) if k != turn]
        text = str(planted[turn]["content"])
        (sentence,) = [
            f.sentence(example.answers[0]) for f in FACTS if f.sentence(example.answers[0]) in text
        ]
        restored = [text.replace(sep + sentence, "", 1) for sep in (" ", "\n\n") if sep + sentence in text]
        assert str(real[turn]["content"]) in restored


def test_deterministic_for_a_seed() -> None:
    first = load_examples("needle-chat", n=8, seed=3)
    assert first == load_examples("needle-chat", n=8, seed=3)
    assert first[:4] == load_examples("needle-chat", n=4, seed=3)  # an example does not depend on n
    assert [e.answers for e in first] != [e.answers for e in load_examples("needle-chat", n=8, seed=4)]


def test_vague_question_asks_for_the_same_needles_without_their_words() -> None:
    named, vague = (load_examples("needle-chat", n=6, question=q) for q in ("named", "vague"))
    assert [e.answers for e in named] == [e.answers for e in vague]
    assert all(e.question == e.messages[-1]["content"] == VAGUE_QUESTION for e in vague)
    words = {w for f in FACTS for w in normalize_answer(f.sentence("")).split() if len(w) > 3}
    assert not words & set(normalize_answer(VAGUE_QUESTION).split())


def test_document_placement_is_compressible_text() -> None:
    hard = load_examples("needle-chat", n=5, placement="document")
    assert len(hard) == 5 and not any(needle_in_instructions(e) for e in hard)
    with pytest.raises(DatasetError):
        load_examples("needle-chat", n=1, placement="anywhere")


def test_chat_policy_keeps_needles_in_instructions(needles: list[Example]) -> None:
    kept = [e for e in needles if needle_in_instructions(e)]
    assert kept
    for example in kept:
        for stable in (False, True):
            sent = compress(
                example.messages, "bm25", rate=0.25, chat=ChatPolicy(keep_recent=0), cache_stable=stable
            ).messages
            assert any(example.answers[0] in str(m["content"]) for m in sent)


def test_next_turn_reference_is_the_real_reply_cut() -> None:
    examples = load_examples("sharegpt-next", n=5)
    assert len(examples) == 5
    for example in examples:
        assert example.messages[-1]["role"] == "user" and example.question == example.messages[-1]["content"]
        cid = example.id.removeprefix("next-")
        (conversation,) = [c for c in sharegpt_conversations() if c.id == cid]
        reply = str(conversation.messages[len(example.messages)]["content"])
        assert list(conversation.messages[: len(example.messages)]) == example.messages
        assert reply.startswith(example.answers[0]) and example.answers[0]
    assert truncate_tokens("one two three four", 2) == "one two"
    assert truncate_tokens("short", 64) == "short"
