"""Answer metrics, each registered with whether higher is better, how it aggregates and whether it is
right/wrong (then the paired comparison with the original prompt adds an exact McNemar test).

Normalisation follows the SQuAD convention: lower case, no punctuation, no articles, single spaces.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .._registry import Registry

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NON_WORD = re.compile(r"[\W_]+")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


Score = Callable[[str, Sequence[str]], float]


@dataclass(frozen=True)
class Metric:
    """``score(prediction, references) -> float`` in [0, 1] unless stated otherwise.

    ``aggregation``: how per-example scores combine ("mean" for all metrics here); ``binary``: scores are
    right (1) or wrong (0), so paired comparisons also get McNemar's exact test.
    """

    name: str
    score: Score
    higher_is_better: bool = True
    aggregation: str = "mean"
    binary: bool = False


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str, *, higher_is_better: bool = True, aggregation: str = "mean", binary: bool = False
) -> Callable[[Score], Score]:
    """Decorator: register a scoring function as a metric (see ``Metric``)."""

    def add(fn: Score) -> Score:
        METRICS.register(name)(Metric(name, fn, higher_is_better, aggregation, binary))
        return fn

    return add


def normalize_answer(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def answer_words(text: str) -> str:
    """``text`` as lower-case words split at every mark that is not a letter or digit, articles left out,
    commas between digits dropped ("1,000" and "1000" are one number). Unlike ``normalize_answer``, which
    deletes ASCII punctuation (SQuAD's rule, kept for exact match), marks become spaces: "Andy Warhol's"
    holds the words "andy warhol", and years or words joined by an en or em dash stay two words, where
    deleting the marks would glue them together."""
    spaced = _NON_WORD.sub(" ", _DIGIT_COMMA.sub("", text.lower()))
    return " ".join(_ARTICLES.sub(" ", spaced).split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """True when any gold answer occurs in the text as whole words (``answer_words``; gold-answer
    retention)."""
    haystack = f" {answer_words(text)} "
    return any(f" {answer_words(a)} " in haystack for a in answers if answer_words(a))


@register_metric("contains", binary=True)
def contains_score(prediction: str, references: Sequence[str]) -> float:
    return float(contains_answer(prediction, references))


@register_metric("exact_match", binary=True)
def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


@register_metric("f1")
def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Best SQuAD token F1 over the references."""
    best = 0.0
    predicted = normalize_answer(prediction).split()
    for reference in references:
        gold = normalize_answer(reference).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def last_number(text: str) -> float | None:
    """The answer number of a chain of thought: after '####' or 'answer is' if present, else the last one."""
    for marker in ("####", "answer is"):
        if marker in text.lower():
            text = text[text.lower().rindex(marker) + len(marker) :]
            found = _NUMBER.findall(text)
            if found:
                return float(found[0].replace(",", ""))
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


@register_metric("numeric_match", binary=True)
def numeric_match(prediction: str, references: Sequence[str]) -> float:
    predicted = last_number(prediction)
    return float(predicted is not None and any(last_number(r) == predicted for r in references))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge(prediction: str, reference: str, kind: str) -> float:
    """ROUGE-1, ROUGE-2 or ROUGE-L F-measure on normalised tokens."""
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not p or not r:
        return 0.0
    if kind == "L":
        overlap, p_total, r_total = _lcs(p, r), len(p), len(r)
    else:
        n = int(kind)
        p_grams = Counter(tuple(p[i : i + n]) for i in range(len(p) - n + 1))
        r_grams = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
        overlap, p_total, r_total = (
            sum((p_grams & r_grams).values()),
            sum(p_grams.values()),
            sum(r_grams.values()),
        )
    if not overlap:
        return 0.0
    precision, recall = overlap / p_total, overlap / r_total
    return 2 * precision * recall / (precision + recall)


def _rouge_metric(kind: str) -> Score:
    def score(prediction: str, references: Sequence[str]) -> float:
        return max((rouge(prediction, r, kind) for r in references), default=0.0)

    return score


for _kind in ("1", "2", "L"):
    register_metric(f"rouge{_kind.lower()}")(_rouge_metric(_kind))


def bootstrap_ratio(
    compressed: Sequence[float], original: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Fidelity = mean(compressed) / mean(original) over paired examples, with a 95% bootstrap interval."""
    c, o = np.asarray(compressed, dtype=float), np.asarray(original, dtype=float)
    if not len(c) or o.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(c), size=(samples, len(c)))
    denominators = o[picks].sum(axis=1)
    ratios = np.where(denominators > 0, c[picks].sum(axis=1) / np.maximum(denominators, 1e-12), np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(c.sum() / o.sum()), float(low), float(high)
