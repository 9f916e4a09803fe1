"""Behaviour of each strategy beyond the shared contract, on real data where it matters."""

from __future__ import annotations

import re

import pytest

from occ_research import (
    ChatPolicy,
    InvalidParameterError,
    UnknownNameError,
    compress,
    count_tokens,
    make_strategy,
)
from occ_research.evals._datasets import Example
from occ_research.evals._metrics import contains_answer
from occ_research.strategies import Candidates, Pipeline, Unit, fit_by_score, strategy_from_config

from .conftest import STRATEGY_NAMES, build

BUDGETED = [n for n in STRATEGY_NAMES if build(n).fits_budget]
# an LLM decides how long its summaries are: summarize meets budgets but may stay under them
EXTRACTIVE = [n for n in BUDGETED if n != "summarize"]


@pytest.mark.parametrize("name", EXTRACTIVE)
@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.75])
def test_achieved_rate_is_within_5_percent_on_real_texts(
    name: str, rate: float, qmsum_examples: list[Example], nq_examples: list[Example]
) -> None:
    strategy = build(name)
    # model-based strategies cost seconds per prompt: fewer examples, the same bar
    examples = (
        [qmsum_examples[0], *nq_examples[:2]] if strategy.uses_model else [*qmsum_examples, *nq_examples[:5]]
    )
    for example in examples:
        result = strategy.compress(example.messages, rate=rate, question=example.question)
        assert result.original_tokens > 500
        assert result.budget_met
        assert rate * 0.95 <= result.rate <= rate, (example.id, result.rate)


@pytest.mark.parametrize("name", ["tfidf", "bm25", "gzip", "random"])
def test_small_targets_are_met_within_5_percent(name: str, nq_examples: list[Example]) -> None:
    """At 16x a 10-passage NQ prompt leaves 60-80 tokens, and one sentence more or less is well over 5% of
    that: the measured gap is spent on the head of the next unit (``top_up``)."""
    strategy = build(name)
    for example in nq_examples:
        result = strategy.compress(example.messages, rate=0.0625, question=example.question)
        target = result.target_tokens
        assert target is not None and 0.95 * target <= result.compressed_tokens <= target, example.id


@pytest.mark.parametrize("name", ["tfidf", "bm25"])
def test_question_aware_rankers_keep_the_answer(name: str, nq_examples: list[Example]) -> None:
    kept = [
        contains_answer(compress(e.messages, name, rate=0.25, question=e.question).text, e.answers)
        for e in nq_examples
    ]
    random_kept = [
        contains_answer(compress(e.messages, "random", rate=0.25, question=e.question).text, e.answers)
        for e in nq_examples
    ]
    assert sum(kept) >= 0.75 * len(kept)
    assert sum(kept) > sum(random_kept) + 5


@pytest.mark.parametrize(
    ("question", "final", "relevance", "stops"),
    [
        ("who?", True, True, True),
        ("who?", False, True, False),
        ("", True, True, False),
        ("who?", True, False, False),
    ],
)
def test_a_unit_that_does_not_fit_ends_the_choice_only_for_the_prompts_question(
    question: str, final: bool, relevance: bool, stops: bool
) -> None:
    """Ranked against the prompt's own question, the first unit that does not fit ends the choice and the
    rest goes to its head; without a question, in cache-stable mode (a stand-in question) or with scores
    that say nothing about relevance, smaller units further down use the budget."""
    texts = [
        "Guinness World Records is a book.",
        "The brainchild of Sir Hugh Beaver, the book was founded by two brothers in London in 1954.",
        "Chess is a game.",
    ]
    units = tuple(Unit(i, t, count_tokens(t, "gpt-4o"), 0, "user") for i, t in enumerate(texts))
    budget = units[0].tokens + units[2].tokens + 7  # the first, and 7 more: the third, or a head
    candidates = Candidates(units, budget, question, "gpt-4o", 0, final)
    kept = fit_by_score(candidates, [1.0, 0.9, 0.1], relevance=relevance).kept
    assert kept[0] == texts[0] and (2 not in kept) == stops
    assert kept[1].startswith("The brainchild of Sir Hugh Beaver" if stops else "The brainchild")
    assert kept[1] != texts[1]


def test_in_cache_stable_mode_only_retrieved_passages_stop_at_a_misfit() -> None:
    """A turn's retrieved passages were fetched for its question, so they are chosen as for the prompt's own
    question; pasted text, which a later turn may ask about anything in, fills the budget with whole
    smaller units."""
    passages = (
        "Document [1](Title: Guinness World Records) The Guinness Book of World Records is a book of records. "
        "The brainchild of Sir Hugh Beaver, it was co-founded by the brothers Norris and Ross McWhirter in "
        "Fleet Street, London, in August 1954, and it has since sold many millions of copies around the world."
        "\n\nDocument [2](Title: Chess) That was his second win of the cup."
        "\n\nDocument [3](Title: Tea in Britain) Tea arrived in the 17th century."
    )
    pasted = re.sub(r"Document \[\d\]\(Title: [^)]*\) ", "", passages)
    for text, stops in ((passages, True), (pasted, False)):
        messages = [{"role": "user", "content": text + "\n\nwho started the guinness book of world records?"}]
        out = str(compress(messages, "bm25", rate=0.4, cache_stable=True).messages[0]["content"])
        assert "Sir Hugh Beaver" in out and ("second win" not in out) == stops


def test_tfidf_without_question_keeps_central_sentences() -> None:
    text = (
        "Solar panels convert sunlight into electricity. Solar electricity output depends on sunlight hours. "
        "My cat likes tuna. Panels produce more electricity in summer sunlight."
    )
    result = compress(text, "tfidf", rate=0.7)
    assert "cat" not in result.text


def test_gzip_ranks_by_similarity_to_the_question() -> None:
    text = "The error code E4012 means the disk is full. The weather was nice. Lunch was pasta with tomato sauce."
    result = compress(text, "gzip", rate=0.7, question="What does error code E4012 mean?")
    assert "E4012" in result.text and "pasta" not in result.text


@pytest.mark.parametrize(
    ("side", "kept", "dropped"),
    [
        ("head", ["First"], ["Last"]),
        ("tail", ["Last"], ["First"]),
        ("middle", ["First", "Last"], ["Middle 10"]),
    ],
)
def test_truncate_sides(side: str, kept: list[str], dropped: list[str]) -> None:
    text = (
        "First sentence is here. "
        + " ".join(f"Middle {i} filler goes on." for i in range(20))
        + " Last one here."
    )
    result = compress(text, "truncate", side=side, rate=0.3)
    assert all(k in result.text for k in kept) and not any(d in result.text for d in dropped)


def test_random_depends_on_seed_only() -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(60))
    a, b, c = (compress(text, "random", rate=0.5, seed=s).text for s in (1, 1, 2))
    assert a == b != c


def test_dedup_marks_exact_and_near_copies() -> None:
    chunk = (
        "The Eiffel Tower was completed in 1889 for the World's Fair and stands 330 metres tall on the Champ "
        "de Mars in Paris, where it was the tallest structure in the world until 1930."
    )
    messages = [
        {"role": "user", "content": f"{chunk}\n\nWhen was it built?"},
        {"role": "assistant", "content": "In 1889."},
        {
            "role": "user",
            "content": f"{chunk.replace('stands', 'rises')} Other facts follow here today.\n\nHow tall?",
        },
    ]
    document = ChatPolicy(conversation=False)  # as a chat, the final user turn is all instructions
    result = compress(messages, "dedup", chat=document)
    assert result.messages[0] == messages[0]
    assert "[repeated text removed: see message 1]" in result.messages[2]["content"]
    assert "Other facts follow here today." in result.messages[2]["content"]
    assert result.messages[2]["content"].endswith("How tall?")
    silent = compress(messages, "dedup", marker="", chat=document)
    assert "repeated" not in silent.messages[2]["content"]
    assert not compress(messages, "dedup", threshold=1.0, min_words=50, chat=document).saved_tokens


def test_dedup_on_real_duplicated_chats(chat_examples: list[Example]) -> None:
    import json

    from occ_research.evals._datasets import data_dir

    rows = json.loads((data_dir() / "fastchat_dummy_conversation" / "dummy_conversation.json").read_text())
    history = [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for row in rows[:40]
        for t in row["conversations"]
    ]
    result = compress(history, "dedup", min_words=4)
    assert result.rate < 0.8
    assert len(result.messages) == len(history)


def test_pipeline_runs_steps_in_order_and_meets_budget(qmsum_examples: list[Example]) -> None:
    pipe = Pipeline([make_strategy("dedup"), make_strategy("tfidf")])
    result = pipe.compress(qmsum_examples[0].messages, rate=0.3)
    assert result.budget_met and 0.285 <= result.rate <= 0.3
    assert {e.step for e in result.trace} == {"dedup", "tfidf"}
    assert strategy_from_config(pipe.config()).config() == pipe.config()


def test_params_are_validated_on_use_with_suggestions() -> None:
    with pytest.raises(InvalidParameterError, match="did you mean 'granularity'"):
        make_strategy("tfidf", granularty="sentence")
    lazy = make_strategy("tfidf", granularity="word")  # constructors only store
    with pytest.raises(InvalidParameterError, match="must be one of"):
        lazy.compress("Some text.", rate=0.5)
    with pytest.raises(InvalidParameterError, match=r">= 0\.05"):
        compress("Some text.", "dedup", threshold=0.0)
    with pytest.raises(InvalidParameterError, match="must be float"):
        compress("Some text.", "bm25", k1="high", rate=0.5)
    with pytest.raises(UnknownNameError, match="did you mean 'bm25'"):
        make_strategy("bm52")


def test_a_misspelt_option_is_refused_not_ignored() -> None:
    """``rtae=0.5`` must not compress with no budget: options are checked at run time, not only by mypy."""
    strategy = make_strategy("bm25")
    with pytest.raises(InvalidParameterError, match="did you mean 'rate'"):
        strategy.compress("Some text.", rtae=0.5)  # type: ignore[call-arg]
    with pytest.raises(InvalidParameterError, match="has no parameter 'rtae'"):
        compress("Some text.", "bm25", rtae=0.5)  # not an option, so a strategy parameter: refused too


def test_a_preset_takes_strategy_parameters_and_a_budget() -> None:
    text = "The first sentence is here. A second one follows it. The third one ends it. " * 8
    with pytest.raises(InvalidParameterError, match="must be float"):
        compress(text, preset="bm25-q25", k1="high")  # the parameter reaches the preset's strategy
    tuned = compress(text, preset="bm25-q25", k1=0.9)
    assert tuned.target_tokens == int(0.25 * tuned.original_tokens)
    assert compress(text, preset="bm25-q25", rate=0.5).target_tokens == int(0.5 * tuned.original_tokens)


@pytest.mark.parametrize(
    "budget",
    [{"rate": 0}, {"rate": 1.5}, {"rate": True}, {"target_tokens": -1}, {"rate": 0.5, "target_tokens": 9}],
)
def test_bad_budgets_are_refused(budget: dict[str, float]) -> None:
    with pytest.raises(InvalidParameterError):
        compress("Some text.", "bm25", **budget)


def test_clone_and_get_params() -> None:
    s = make_strategy("bm25", k1=1.5)
    c = s.clone(b=0.5)
    assert c.get_params() == {
        "order": "original",
        "auto_threshold": 0.5,
        "auto_min": 0.1,
        "auto_max": 0.5,
        "granularity": "sentence",
        "k1": 1.5,
        "b": 0.5,
    }
    assert s.get_params()["b"] == 0.75


@pytest.mark.parametrize("granularity", ["sentence", "paragraph", "passage"])
def test_granularities(granularity: str, nq_examples: list[Example]) -> None:
    example = nq_examples[0]
    result = compress(example.messages, "bm25", granularity=granularity, rate=0.4, question=example.question)
    assert result.budget_met
    whole = [e for e in result.trace if e.action == "kept"]
    assert whole
    if granularity == "passage":
        assert all(e.text.startswith("Document [") or e.text.startswith("Write") for e in result.trace)


def test_speaker_labels_survive_with_their_lines(qmsum_examples: list[Example]) -> None:
    example = qmsum_examples[0]
    result = compress(example.messages, "bm25", rate=0.2, question=example.question)
    lines = result.messages[1]["content"].splitlines()
    transcript_lines = [line for line in lines[:-2] if line.strip()]
    assert transcript_lines
    assert all(": " in line.split(".")[0] or line.startswith("[") for line in transcript_lines)
