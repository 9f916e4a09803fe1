"""``order``: the kept passages in their original order, most relevant first, or most relevant at the edges;
only within a message's text, never across protected blocks, the instruction or the question."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from occ_research import compress
from occ_research._text import split_text
from occ_research.evals._datasets import Example
from occ_research.exceptions import InvalidParameterError
from occ_research.strategies import ChatPolicy, CompressionResult, make_strategy
from occ_research.strategies._order import HEADER, arrange, movable_passages

from .test_contract import budgets, check_contract, messages, text

RANKERS = ["bm25", "tfidf", "hybrid", "gzip"]
INSTRUCTION = "Answer the question using only the documents below (some may be irrelevant)."
QUESTION = "Question: which river flows through the city of Lyon?"
TOPICS = [
    "The violin has four strings tuned in fifths. It is played with a bow made of horsehair.",
    "Glaciers form where snow builds up faster than it melts. Their ice flows slowly downhill.",
    "The Rhone river flows through the city of Lyon. Lyon lies where the Rhone meets the Saone river.",
    "Honey bees communicate with a waggle dance. The dance tells other bees where flowers are.",
    "Lyon is a city in France famous for its food. The river Saone also flows through Lyon.",
    "Chess openings have names like the Sicilian. Players study them for years.",
]


def documents(topics: list[str] = TOPICS, header: bool = True) -> str:
    docs = [f"[{i + 1}](Title: Topic {i + 1}) {t}" if header else t for i, t in enumerate(topics)]
    return "\n\n".join([INSTRUCTION, *docs, QUESTION])


def passages_of(result: CompressionResult) -> list[str]:
    """The blank-line separated blocks of the output's last message."""
    return [b for b in str(result.messages[-1]["content"]).split("\n\n") if b.strip()]


def doc_number(block: str) -> int | None:
    """Which document a kept block came from: by its header, or by the text it holds (a whole sentence,
    or the head of one that filled the budget); None when that is ambiguous."""
    header = re.match(r"\[(\d+)\]", block)
    if header:
        return int(header.group(1)) - 1
    hits = [i for i, t in enumerate(TOPICS) if block in t or any(s in block for s in _sentences(t))]
    return hits[0] if len(hits) == 1 else None


def kept_documents(result: CompressionResult) -> list[int]:
    """The documents of the output's blocks, in output order; checks that what is left of the instruction
    comes first and the question last (they never move)."""
    blocks = passages_of(result)
    assert blocks[-1] == QUESTION
    instruction = [k for k, b in enumerate(blocks) if b and INSTRUCTION.startswith(b)]
    assert instruction in ([], [0])
    numbers = [doc_number(b) for b in blocks[len(instruction) : -1]]
    return [n for n in numbers if n is not None]


def _sentences(topic: str) -> list[str]:
    return [s.strip() for s in topic.replace(". ", ".\n").splitlines()]


def passage_relevance(result: CompressionResult) -> dict[int, float]:
    """Per document, the best score among its kept units (the rule ``order`` ranks by)."""
    best: dict[int, float] = {}
    for entry in result.trace:
        k = doc_number(entry.text) if entry.action != "dropped" and entry.score is not None else None
        if k is not None and entry.score is not None:
            best[k] = max(best.get(k, -1e9), entry.score)
    return best


# -- the arrangement itself ------------------------------------------------------------------------------


def test_a_passage_header_holds_a_title_with_parentheses() -> None:
    """A kept sentence brings the whole header along, closing parenthesis included."""
    for passage, header in [
        (
            "Document [1](Title: 21 Guns (song)) It was released in 2009.",
            "Document [1](Title: 21 Guns (song))",
        ),
        ("Document [2](Title: Creatine) Creatine is an acid.", "Document [2](Title: Creatine)"),
        ("[3] Plain passage.", "[3]"),
    ]:
        match = HEADER.match(passage)
        assert match is not None and match.group(1) == header


def test_arrange_puts_the_best_first_or_at_the_edges() -> None:
    relevance = [0.1, 0.9, 0.5, 0.7, 0.3]
    assert arrange(relevance, "original") == [0, 1, 2, 3, 4]
    assert arrange(relevance, "relevance") == [1, 3, 2, 4, 0]
    edges = arrange(relevance, "edges")
    assert edges[0] == 1 and edges[-1] == 3 and edges[1] == 2 and edges[-2] == 4 and edges[2] == 0
    assert arrange([0.5, 0.5, 0.5], "relevance") == [0, 1, 2]  # ties keep their order


def test_passages_are_header_blocks_and_the_instruction_and_question_stay() -> None:
    prompt = documents()
    question_at = prompt.index(QUESTION)
    seg = split_text(prompt, [(question_at, len(prompt))])
    runs = movable_passages(seg)
    assert len(runs) == 1 and len(runs[0]) == len(TOPICS)
    firsts = [seg.texts[p.start] for p in runs[0]]
    assert all(f.startswith(f"[{i + 1}]") for i, f in enumerate(firsts))
    # without headers, every block but the first and the last may move
    plain = split_text("\n\n".join(["Intro line.", "A one.", "B two.", "C three.", "Closing line."]))
    assert [[plain.texts[i] for i in p] for p in movable_passages(plain)[0]] == [
        ["A one."],
        ["B two."],
        ["C three."],
    ]


# -- through compress ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RANKERS)
@pytest.mark.parametrize("rate", [0.6, 0.35, None])
def test_original_order_is_the_default_byte_for_byte(name: str, rate: float | None) -> None:
    prompt = documents()
    default = compress(prompt, name, rate=rate, question=QUESTION)
    original = compress(prompt, name, rate=rate, question=QUESTION, order="original")
    assert original.messages == default.messages
    # and it is document order: the kept documents appear in the order they were given
    numbers = kept_documents(default)
    assert numbers == sorted(numbers)


@pytest.mark.parametrize("name", RANKERS)
def test_relevance_puts_the_most_relevant_passage_first(name: str) -> None:
    result = compress(documents(), name, rate=0.6, question=QUESTION, order="relevance")
    relevance = passage_relevance(result)
    numbers = kept_documents(result)
    assert numbers[0] == max(relevance, key=lambda k: (relevance[k], -k))
    assert [relevance[k] for k in numbers] == sorted(relevance.values(), reverse=True)


@pytest.mark.parametrize("name", RANKERS)
def test_edges_puts_the_two_most_relevant_at_the_ends(name: str) -> None:
    result = compress(documents(), name, rate=0.6, question=QUESTION, order="edges")
    relevance = passage_relevance(result)
    top = sorted(relevance, key=lambda k: (-relevance[k], k))
    numbers = kept_documents(result)
    assert len(numbers) >= 3
    assert numbers[0] == top[0] and numbers[-1] == top[1]


def test_the_answer_passage_moves_to_the_front(nq_examples: list[Example]) -> None:
    example = next(e for e in nq_examples if (e.gold_position or 0) > 2)
    result = compress(example.messages, "hybrid", rate=0.25, question=example.question, order="relevance")
    blocks = [b for b in passages_of(result) if b.startswith("Document [")]
    assert any(answer in blocks[0] for answer in example.answers)


@pytest.mark.parametrize("name", RANKERS)
@pytest.mark.parametrize("rate", [0.6, 0.3])
def test_orders_keep_the_same_text_and_tokens(name: str, rate: float) -> None:
    results = {
        order: compress(documents(), name, rate=rate, question=QUESTION, order=order)
        for order in ("original", "relevance", "edges")
    }
    kept = {order: sorted(passages_of(r)) for order, r in results.items()}
    tokens = {order: r.compressed_tokens for order, r in results.items()}
    assert kept["relevance"] == kept["original"] == kept["edges"]
    assert max(tokens.values()) - min(tokens.values()) <= 3
    assert all(r.budget_met for r in results.values())


@pytest.mark.parametrize("order", ["relevance", "edges"])
def test_nothing_crosses_a_message_or_a_protected_block(order: str) -> None:
    code = "```python\ndef lyon():\n    return 'Rhone'\n```"
    first = "\n\n".join(f"Document [{i + 1}] {t}" for i, t in enumerate(TOPICS[:3]))
    second = "\n\n".join(f"Document [{i + 4}] {t}" for i, t in enumerate(TOPICS[3:]))
    prompt = [
        {"role": "user", "content": f"{first}\n\n{code}\n\n{second}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "\n\n".join(f"[{i + 1}] {t}" for i, t in enumerate(reversed(TOPICS)))},
        {"role": "user", "content": QUESTION},
    ]
    documents_only = ChatPolicy(conversation=False)  # every message's text may change
    plain = compress(prompt, "bm25", rate=0.7, question=QUESTION, chat=documents_only)
    moved = compress(prompt, "bm25", rate=0.7, question=QUESTION, order=order, chat=documents_only)
    for before, after in zip(plain.messages, moved.messages, strict=True):
        old, new = str(before["content"]), str(after["content"])
        assert sorted(old.split("\n\n")) == sorted(new.split("\n\n"))  # the same blocks, in the same message
        if code in old:
            head_old, tail_old = old.split(code)
            head_new, tail_new = new.split(code)
            assert sorted(head_old.split("\n\n")) == sorted(head_new.split("\n\n"))
            assert sorted(tail_old.split("\n\n")) == sorted(tail_new.split("\n\n"))
    assert moved.messages[-1] == prompt[-1]
    assert moved.messages != plain.messages  # something did move


def test_the_instruction_and_the_default_question_stay_in_place() -> None:
    prompt = [
        {"role": "system", "content": "You answer from documents."},
        {"role": "user", "content": documents()},
    ]
    result = compress(prompt, "bm25", rate=0.6, order="relevance")  # the question: the last paragraph
    assert result.messages[0] == prompt[0]
    relevance = passage_relevance(result)
    assert kept_documents(result)[0] == max(relevance, key=lambda k: (relevance[k], -k))


def test_plain_paragraphs_move_but_not_the_first_and_last() -> None:
    prompt = documents(header=False)
    result = compress(prompt, "bm25", rate=0.6, question=QUESTION, order="relevance")
    relevance = passage_relevance(result)
    assert kept_documents(result)[0] == max(relevance, key=lambda k: (relevance[k], -k))


def test_a_bad_order_is_refused_with_a_suggestion() -> None:
    with pytest.raises(InvalidParameterError, match="did you mean 'edges'"):
        compress("Some text.", "bm25", rate=0.5, order="edge")


def test_embed_orders_too() -> None:
    result = compress(documents(), "embed", rate=0.6, question=QUESTION, order="relevance")
    relevance = passage_relevance(result)
    assert kept_documents(result)[0] == max(relevance, key=lambda k: (relevance[k], -k))


@pytest.mark.parametrize("name", ["bm25", "hybrid"])
@pytest.mark.parametrize("order", ["relevance", "edges"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.one_of(messages, text), budget=budgets)
def test_contract_holds_in_every_order(name: str, order: str, prompt: Any, budget: dict[str, Any]) -> None:
    check_contract(make_strategy(name, order=order), prompt, budget)
