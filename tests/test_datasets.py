"""Dataset loaders against the real files in the shared data folder."""

from __future__ import annotations

import re
import statistics

import pytest

from occ_research import DatasetError
from occ_research.evals import load_examples
from occ_research.evals._datasets import NQ_ORACLE, Example, _rows, nq_index
from occ_research.evals._metrics import contains_answer, normalize_answer


def test_nq_multidoc_places_gold_passage(nq_examples: list[Example]) -> None:
    assert len(nq_examples) == 20
    fixed = load_examples("nq-multidoc", n=5, documents=5, gold_position=0, seed=3)
    for example in fixed:
        content = example.messages[0]["content"]
        assert content.count("Document [") == 5
        first = content.split("Document [2]")[0]
        assert contains_answer(first, example.answers)
        assert content.endswith(example.question)
    assert load_examples("nq-multidoc", n=5, seed=3) == load_examples("nq-multidoc", n=5, seed=3)


def test_qmsum_and_sharegpt(qmsum_examples: list[Example], chat_examples: list[Example]) -> None:
    assert all(
        e.task == "summary" and e.answers and len(e.messages[1]["content"]) > 10_000 for e in qmsum_examples
    )
    assert all(e.messages[-1]["role"] == "user" and len(e.messages) >= 3 for e in chat_examples)


def test_answer_normalisation() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert contains_answer("It was built by the Gustave Eiffel company.", ["Gustave Eiffel"])
    assert not contains_answer("Eiffelian", ["Eiffel"])
    assert not contains_answer("anything", [""])
    # marks split words instead of gluing them: a possessive, dashes of any kind, a hyphenated compound
    assert contains_answer("inspired by Andy Warhol's words", ["Andy Warhol"])
    assert contains_answer("and mammals\u2014have a vertebral column (spine)", ["have a vertebral column"])
    assert contains_answer("for the 2002\u20132003 season", ["2003"])
    assert contains_answer("an elongated, S-shaped basin", ["S"])
    assert not contains_answer("Sam sailed the Atlantic", ["S"])
    # a number reads the same with or without thousands separators, either side
    assert contains_answer("about 1000 restaurants", ["1,000"])
    assert contains_answer("about 1,000 restaurants", ["1000"])
    assert not contains_answer("about 1,0005 restaurants", ["1000"])


def test_datasets_declare_task_kind_and_metric() -> None:
    from occ_research.evals import DATASETS, KINDS, METRICS

    specs = {name: DATASETS.get(name) for name in DATASETS.names()}
    assert {s.kind for s in specs.values()} == set(KINDS)  # every kind of prompt has a dataset
    assert all(s.metric in METRICS for s in specs.values())
    assert specs["nq-multidoc"].retention and not specs["qmsum"].retention
    assert load_examples("gsm8k-cot", n=1)[0].kind == specs["gsm8k-cot"].kind == "few-shot"
    assert METRICS.get("contains").binary and not METRICS.get("rougel").binary


# -- nq-multidoc: retrieved distractors and 20-document contexts --------------------------------------------

_DOCUMENT = re.compile(r"\n\n(?=Document \[\d+\]\(Title: )")
_STOP_WORDS = set(
    "who what when where which how is was were are did does do of in on to for by and or with".split()
)


def _documents(example: Example) -> list[str]:
    """The prompt's documents as "title) text", the "Document [k](Title: " prefix cut off (its number would
    match numeric answers)."""
    body = example.messages[0]["content"].rsplit("\n\nQuestion:", 1)[0]
    return [chunk.split("(Title: ", 1)[1] for chunk in _DOCUMENT.split(body)[1:]]


def _distractors(example: Example) -> list[str]:
    return [d for k, d in enumerate(_documents(example)) if k != example.gold_position]


def _overlap(question: str, passage: str) -> float:
    """Share of the question's content words that occur in the passage: a similarity the retriever does not
    optimise (no idf, no length normalisation), so the comparison below is a real property."""
    words = set(normalize_answer(question).split()) - _STOP_WORDS - {"question", "answer"}
    return len(words & set(normalize_answer(passage).split())) / max(len(words), 1)


@pytest.fixture(scope="module")
def retrieved_20() -> list[Example]:
    return load_examples("nq-multidoc", n=40, documents=20, gold_position=[0, 9, 19], distractors="retrieved")


def test_retrieved_distractors_hold_no_answer(retrieved_20: list[Example]) -> None:
    for example in retrieved_20:
        distractors = _distractors(example)
        assert len(distractors) == 19 and len(set(distractors)) == 19  # no passage twice
        assert not any(contains_answer(d, example.answers) for d in distractors)


def test_retrieved_distractors_are_deterministic(retrieved_20: list[Example]) -> None:
    nq_index.cache_clear()  # a rebuilt index ranks the same way
    again = load_examples(
        "nq-multidoc", n=40, documents=20, gold_position=[0, 9, 19], distractors="retrieved"
    )
    assert again == retrieved_20


def test_retrieved_distractors_differ_from_random_and_resemble_the_question() -> None:
    retrieved = load_examples("nq-multidoc", n=40, documents=10, seed=5, distractors="retrieved")
    drawn = load_examples("nq-multidoc", n=40, documents=10, seed=5, distractors="random")
    # the same questions with the gold passage at the same (random) positions: only the distractors differ
    assert [(e.id, e.gold_position) for e in retrieved] == [(e.id, e.gold_position) for e in drawn]
    assert all(set(_distractors(r)) != set(_distractors(d)) for r, d in zip(retrieved, drawn, strict=True))
    similarity = {
        name: [statistics.fmean(_overlap(e.question, p) for p in _distractors(e)) for e in examples]
        for name, examples in (("retrieved", retrieved), ("random", drawn))
    }
    assert statistics.fmean(similarity["retrieved"]) > statistics.fmean(similarity["random"]) + 0.15
    wins = sum(r > d for r, d in zip(similarity["retrieved"], similarity["random"], strict=True))
    assert wins >= 0.9 * len(retrieved)


@pytest.mark.parametrize("distractors", ["random", "retrieved"])
def test_twenty_documents_place_the_gold_passage_where_asked(distractors: str) -> None:
    rows = _rows(NQ_ORACLE)
    examples = load_examples(
        "nq-multidoc", n=12, documents=20, gold_position=[0, 9, 19], seed=2, distractors=distractors
    )
    for k, example in enumerate(examples):
        gold = rows[int(example.id.removeprefix("nq-"))]["ctxs"][0]
        documents = _documents(example)
        assert len(documents) == 20 and example.gold_position == [0, 9, 19][k % 3]
        assert documents[example.gold_position] == f"{gold['title']}) {gold['text']}"


def test_every_position_moves_the_gold_passage_among_the_same_distractors() -> None:
    examples = load_examples(
        "nq-multidoc",
        n=4,
        documents=20,
        gold_position=[0, 9, 19],
        every_position=True,
        distractors="retrieved",
    )
    assert len(examples) == 12 and len({e.id for e in examples}) == 12  # ids stay unique for resumed runs
    for k in range(0, 12, 3):
        trio = examples[k : k + 3]
        assert [e.gold_position for e in trio] == [0, 9, 19] and len({e.question for e in trio}) == 1
        assert _distractors(trio[0]) == _distractors(trio[1]) == _distractors(trio[2])
        assert len({_documents(e)[e.gold_position] for e in trio}) == 1
    every = load_examples("nq-multidoc", n=2, documents=5, every_position=True)
    assert [e.gold_position for e in every] == [0, 1, 2, 3, 4] * 2


def test_nq_multidoc_options() -> None:
    default = load_examples("nq-multidoc", n=6, seed=4, gold_position=3)
    assert default == load_examples("nq-multidoc", n=6, seed=4, gold_position=[3], distractors="random")
    assert {e.gold_position for e in default} == {3}
    assert all(e.gold_position is not None for e in load_examples("nq-multidoc", n=6, seed=4))
    with pytest.raises(DatasetError, match="distractors"):
        load_examples("nq-multidoc", n=2, distractors="contriever")
    with pytest.raises(DatasetError, match="gold_position"):
        load_examples("nq-multidoc", n=2, gold_position=[-1])


def test_gsm8k_scores_the_reference_reasoning_in_the_demonstrations_form() -> None:
    """The likelihood signal on a chain-of-thought prompt scores the reference reasoning, in the form the
    demonstrations use ("The answer is N" last, no calculator notes), not the bare number; other datasets
    score their first gold answer."""
    for example in load_examples("gsm8k-cot", n=20):
        target = example.likelihood_target
        assert target.endswith(f"\nThe answer is {example.answers[0]}")
        assert "<<" not in target and "####" not in target and len(target.splitlines()) >= 2
    nq = load_examples("nq-multidoc", n=1)[0]
    assert nq.scored_text is None and nq.likelihood_target == nq.answers[0]
