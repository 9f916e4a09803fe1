"""Dataset loaders against the real files in the shared data folder."""

from __future__ import annotations

from occ_research.evals import load_examples
from occ_research.evals._datasets import Example
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


def test_datasets_declare_task_kind_and_metric() -> None:
    from occ_research.evals import DATASETS, KINDS, METRICS

    specs = {name: DATASETS.get(name) for name in DATASETS.names()}
    assert {s.kind for s in specs.values()} == set(KINDS)  # every kind of prompt has a dataset
    assert all(s.metric in METRICS for s in specs.values())
    assert specs["nq-multidoc"].retention and not specs["qmsum"].retention
    assert load_examples("gsm8k-cot", n=1)[0].kind == specs["gsm8k-cot"].kind == "few-shot"
    assert METRICS.get("contains").binary and not METRICS.get("rougel").binary
