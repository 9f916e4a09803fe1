"""``rate="auto"``: a ranking strategy keeps what stands out and stops where relevance falls off, between
``auto_min`` and ``auto_max`` of the prompt's tokens; fixed budgets are not affected."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from occ_research import compress
from occ_research.evals._datasets import Example
from occ_research.exceptions import InvalidParameterError
from occ_research.strategies import make_strategy

from .test_contract import check_contract, messages, text

RANKERS = ["bm25", "tfidf", "hybrid", "gzip"]
QUESTION = "Which river flows through the city of Lyon in France?"
UNRELATED = [
    "The violin has four strings tuned in fifths. It is played with a bow made of horsehair.",
    "Glaciers form where snow builds up faster than it melts. Their ice flows slowly downhill.",
    "Honey bees communicate with a waggle dance. The dance tells other bees where flowers are.",
    "Chess openings have names like the Sicilian. Players study them for years.",
    "Bread rises because yeast makes gas. Bakers knead the dough to build gluten.",
    "Comets have tails that point away from the sun. Their ice turns to gas as they come near.",
    "Owls hunt at night with silent wings. Their ears sit at different heights on the head.",
    "Tea was first drunk in China. It reached Europe by ship in the seventeenth century.",
]
ABOUT_LYON = [
    "The Rhone river flows through the city of Lyon in France. It rises in a Swiss glacier.",
    "Lyon in France lies where the river Saone meets the Rhone. The city grew around that meeting.",
    "A river cruise through the city of Lyon follows the Saone. Boats leave from the old town of Lyon.",
    "The Rhone river carries snowmelt through Lyon in France. Floods of the river once reached the city.",
    "Bridges over the river in Lyon connect the Presqu'ile to France's second city. The Rhone is wide there.",
    "Lyon's rivers, the Rhone and the Saone, made the city in France a trading hub. Silk came by river.",
    "The city of Lyon in France is built on two hills and two rivers. The Rhone flows east of the centre.",
    "Which river flows through Lyon? In France the Rhone and the Saone river both flow through the city.",
]


def prompt_of(passages: list[str]) -> str:
    docs = [f"Document [{i + 1}] {p}" for i, p in enumerate(passages)]
    return "\n\n".join(["Answer from the documents below.", *docs, f"Question: {QUESTION}"])


EASY = prompt_of(UNRELATED[:4] + ABOUT_LYON[:1] + UNRELATED[4:])  # one relevant passage among many
HARD = prompt_of(ABOUT_LYON)  # relevant text in every passage


@pytest.mark.parametrize("name", RANKERS)
def test_an_easy_prompt_compresses_more_than_a_hard_one(name: str) -> None:
    easy = compress(EASY, name, rate="auto", question=QUESTION)
    hard = compress(HARD, name, rate="auto", question=QUESTION)
    assert easy.rate < hard.rate
    assert "Rhone" in easy.text  # what mattered was kept
    assert easy.budget_met and hard.budget_met


@pytest.mark.parametrize("name", RANKERS)
@pytest.mark.parametrize(("low", "high"), [(0.1, 0.5), (0.2, 0.3), (0.05, 0.9), (0.4, 0.4)])
def test_the_achieved_rate_stays_between_the_floor_and_the_ceiling(
    name: str, low: float, high: float, nq_examples: list[Example]
) -> None:
    strategy = make_strategy(name, auto_min=low, auto_max=high)
    for example in [*nq_examples[:6]]:
        result = strategy.compress(example.messages, rate="auto", question=example.question)
        assert result.target_tokens is not None
        assert int(low * result.original_tokens) <= result.target_tokens <= int(high * result.original_tokens)
        assert result.budget_met
        # never over the ceiling; under the floor by no more than a fixed budget may fall short (5%)
        assert result.compressed_tokens <= result.target_tokens
        assert result.compressed_tokens >= 0.95 * result.target_tokens - 1


def test_a_higher_threshold_keeps_less(nq_examples: list[Example]) -> None:
    example = nq_examples[1]
    rates = [
        compress(example.messages, "bm25", rate="auto", auto_threshold=t, auto_min=0.0, auto_max=1.0).rate
        for t in (0.1, 0.5, 0.9)
    ]
    assert rates[0] >= rates[1] >= rates[2] and rates[0] > rates[2]


def test_scores_that_do_not_fall_off_give_the_ceiling() -> None:
    result = compress(HARD, "bm25", rate="auto", question="zzz qqq")  # no unit matches: all score 0
    assert result.target_tokens == int(0.5 * result.original_tokens)


@pytest.mark.parametrize("name", RANKERS)
@pytest.mark.parametrize("rate", [0.5, 0.25, 0.125])
def test_fixed_budgets_are_unchanged(name: str, rate: float, nq_examples: list[Example]) -> None:
    """The auto parameters play no part in a fixed budget, which is met as before: never over the rate,
    at most 5% under it."""
    other = make_strategy(name, auto_threshold=0.9, auto_min=0.3, auto_max=0.35)
    for example in nq_examples[:4]:
        plain = compress(example.messages, name, rate=rate)
        assert other.compress(example.messages, rate=rate).messages == plain.messages
        assert plain.target_tokens == int(rate * plain.original_tokens)
        assert 0.95 * rate <= plain.rate <= rate


@pytest.mark.parametrize("name", ["identity", "dedup", "truncate", "random", "summarize", "pipeline"])
def test_strategies_that_do_not_rank_refuse_auto(name: str) -> None:
    with pytest.raises(InvalidParameterError, match="rate='auto' needs a strategy that ranks"):
        compress(EASY, name, rate="auto")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": "Auto"}, "0 < rate <= 1 or 'auto'"),
        ({"rate": "auto", "target_tokens": 50}, "not both"),
        ({"rate": "auto", "cache_stable": True}, "cache-stable"),
        ({"rate": "auto", "auto_min": 0.6, "auto_max": 0.4}, "auto_min must be <= auto_max"),
        ({"rate": "auto", "auto_max": 1.5}, "auto_max must be <= 1"),
    ],
)
def test_bad_auto_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        compress([{"role": "user", "content": EASY}], "bm25", **options)


def test_auto_and_order_together() -> None:
    result = compress(EASY, "hybrid", rate="auto", question=QUESTION, order="relevance")
    documents = [b for b in result.text.split("\n\n") if b.startswith("Document")]
    assert "Rhone" in documents[0]


@pytest.mark.parametrize("name", ["bm25", "hybrid"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.one_of(messages, text), question=st.sampled_from([None, "", "What about gamma?"]))
def test_contract_holds_with_auto(name: str, prompt: Any, question: str | None) -> None:
    strategy = make_strategy(name)
    result = check_contract(strategy, prompt, {"rate": "auto", "question": question})
    assert result.target_tokens is not None
    assert result.target_tokens <= int(0.5 * result.original_tokens)
