"""Paired statistics against hand-computed cases, and the likelihood signal on real prompts."""

from __future__ import annotations

import math

import pytest

from occ_research.evals import (
    AnswerScorer,
    bootstrap_mean,
    detectable_difference,
    help_retained,
    load_examples,
    mcnemar_exact,
    paired_difference,
    sample_size_for,
)
from occ_research.evals._stats import verdict


def test_mcnemar_exact_on_hand_computed_cases() -> None:
    # 0 right-to-wrong and 6 wrong-to-right discordant pairs: 2 x (1/2)^6 = 0.03125
    assert mcnemar_exact([1] * 6 + [0] * 4, [0] * 6 + [0] * 4) == pytest.approx(0.03125)
    # b = 1, c = 4: 2 x (C(5,0) + C(5,1)) / 32 = 0.375
    assert mcnemar_exact([0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]) == pytest.approx(0.375)
    assert mcnemar_exact([1, 0], [1, 0]) == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="right/wrong"):
        mcnemar_exact([0.5], [1])


def test_paired_bootstrap_and_detectable_difference() -> None:
    same = paired_difference([1, 0, 1, 1], [1, 0, 1, 1])
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    worse = paired_difference([0] * 50 + [1] * 50, [1] * 100)
    assert worse.value == -0.5 and worse.high < -0.35 and worse.low > -0.65
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1], [1, 0])
    # no discordant pair in 100: the discordant rate is taken as 3/100, so 2.8 x sqrt(0.03) / 10
    assert detectable_difference([1] * 100, [1] * 100, binary=True) == pytest.approx(
        2.8016 * math.sqrt(0.03) / 10, rel=1e-3
    )
    assert detectable_difference([1], [1]) == math.inf
    assert sample_size_for(0.05) == 785 and sample_size_for(0.5) == 8
    mean = bootstrap_mean([1.0, 2.0, 3.0])
    assert mean.value == 2.0 and 1.0 <= mean.low <= 2.0 <= mean.high <= 3.0


def test_verdicts_read_as_sentences() -> None:
    assert verdict(paired_difference([1] * 10, [1] * 10), 0.3, 10, 1.0) == (
        "not distinguishable from the original at n = 10 (could detect >= 0.30)"
    )
    assert verdict(paired_difference([0] * 20, [1] * 20), 0.1, 20, 1e-6).startswith("worse by 1.000")
    assert verdict(bootstrap_mean([]), 0.1, 0) == "not read"


def test_help_retained_per_example() -> None:
    assert help_retained(-2.0, -1.0, -5.0) == pytest.approx(0.75)
    assert help_retained(-2.0, -6.0, -5.0) is None  # the context did not help


def test_likelihood_of_the_gold_answer_needs_its_passage() -> None:
    example = load_examples("nq-multidoc", n=1, documents=3, gold_position=0, seed=1)[0]
    scorer = AnswerScorer(threads=1, n_threads_batch=1)  # every core for batches crawls on a busy machine
    gold = example.answers[0]
    with_passage = scorer.loglikelihood(example.messages, gold)
    question_only = scorer.loglikelihood([{"role": "user", "content": example.question}], gold)
    assert with_passage > question_only  # the passage holding the answer makes it likelier
    assert scorer.loglikelihood(example.messages, gold) == with_passage  # memoised, and deterministic
