"""Question-aware selection that fuses lexical and semantic relevance, at sentence and passage level.

A unit's relevance (a sentence's, and a passage's as a whole) mixes three signals, each scaled to the
prompt's best: BM25 (exact words), the cosine of static MiniLM embeddings (meaning;
``_static_embeddings.py``) and a soft word match (each question word's best cosine among the unit's words,
weighted by how rare the word is), which credits "playing" for "played" or "film" for "movie" (cosines
near 0.8) where BM25 sees nothing and a vector pooled over the whole unit blurs one word into the rest. A sentence then inherits part of
its passage's relevance, so that a passage that matches the question lifts sentences that do not repeat its
words; a passage whose title the question names ("who is the girl in 21 guns" for "21 Guns (song)") gains
more. A multi-hop question's second passage often shares few words with the question; the most relevant
passage leads to it, by naming its title or by a rare name the two share, and lifts it (the second hop).
Within a relevant passage, sentences carrying names and numbers that the question lacks (the likely
answer to who / when / how many) come first: when a budget holds about one passage, the sentence dropped
should be the one without the answer, and a long sentence full of names must not lose to a short fragment
that repeats the question's words.

Passages are recognised by their headers (``Document [3](Title: ...)``, ``[3]``, ``# Heading``,
``Title:``) or a change of message; a kept sentence brings its passage's header with it when the budget
allows (only the header, not the rest of the first sentence), the way speaker labels come with their line.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._static_embeddings import default_static_embedder
from .._tokens import encoding_for_model
from ._base import RankingStrategy
from ._order import HEADER
from ._params import param
from ._rankers import terms
from ._registry import register_strategy
from ._selection import Allowance, Candidates, Choice, Unit, fill_with_head, stops_at_misfit

EMBEDDINGS = ("static", "minilm")
LABEL = re.compile(r"(?m)^\s*(?:question|answer|query|q|a)\s*:", re.IGNORECASE)
#: the title inside a header, without a trailing disambiguation: "21 Guns" in "(Title: 21 Guns (song)"
TITLE = re.compile(r"(?:title|source):\s*(.*?)(?:\s*\([^()]*\)?)?\)?\s*$|^#{1,6}\s+(.*)$", re.IGNORECASE)
#: capitalised words and numbers: the names, dates and counts that answers are made of
NAME = re.compile(r"\b(?:[A-Z][\w'-]*|\d[\d,.]*)")


@dataclass(frozen=True, slots=True)
class Passages:
    """Which passage each unit belongs to, each passage's header unit, and the header's text."""

    of_unit: tuple[int, ...]
    header_unit: tuple[int, ...]  # per passage: the unit index holding its header, -1 for none
    header_text: tuple[str, ...]


def find_passages(units: Sequence[Unit]) -> Passages:
    """A new passage starts at a header or at a new message; a unit before any header is its own run."""
    of_unit: list[int] = []
    header_unit: list[int] = []
    header_text: list[str] = []
    message = None
    for unit in units:
        match = HEADER.match(unit.text)
        if match or unit.message != message or not header_unit:
            header_unit.append(unit.index if match else -1)
            header_text.append(match.group(1).strip() if match else "")
        of_unit.append(len(header_unit) - 1)
        message = unit.message
    return Passages(tuple(of_unit), tuple(header_unit), tuple(header_text))


def bm25(docs: Sequence[Counter[str]], query: set[str], k1: float, b: float) -> np.ndarray:
    """Okapi BM25 of each bag of words against the query terms (no query: summed IDF of the terms)."""
    n = len(docs)
    if query:  # document frequencies of the query's terms only: the prompt's vocabulary is far larger
        df: Counter[str] = Counter({t: sum(t in d for d in docs) for t in query})
    else:
        df = Counter(t for d in docs for t in d)
    idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    lengths = [sum(d.values()) for d in docs]
    avg = (sum(lengths) / n) or 1.0
    scores = np.zeros(n)
    for i, (doc, length) in enumerate(zip(docs, lengths, strict=True)):
        norm = k1 * (1 - b + b * length / avg)
        if query:
            scores[i] = sum(idf[t] * doc[t] * (k1 + 1) / (doc[t] + norm) for t in query if t in doc)
        else:
            scores[i] = sum(idf[t] for t in doc)
    return scores


def _scaled(values: np.ndarray) -> np.ndarray:
    """0 for the prompt's lowest value, 1 for its highest (all 0 when they are equal)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


@register_strategy("hybrid")
@dataclass
class HybridStrategy(RankingStrategy):
    """BM25 fused with static MiniLM similarity; sentences inherit their passage's relevance and header.

    ``semantic_weight`` is the share of meaning (static MiniLM cosine) against exact words (BM25) in both
    the sentence's and the passage's relevance, and ``match_weight`` the weight of the soft word match
    added to them; ``passage_weight`` is the share of its passage's relevance a sentence takes on;
    ``title_weight`` what a passage gains when the question names its title (the share of the title's
    words in the question); ``answer_weight`` what a sentence of a relevant passage gains for names and
    numbers the question lacks; ``hop_weight`` what a passage gains, as a share of the most relevant
    passage's relevance, when that passage names its title and the question does not (the second hop of a
    multi-hop question: "the woman who portrayed Corliss Archer in Kiss and Tell" leads to the film's
    passage, which names Shirley Temple, whose passage holds the answer); ``link_weight`` what a passage
    gains, as a share of the same, when it shares a rare name with that passage that the question does
    not use (either way: "the chairman of the company that bought FleetBoston" leads to Bank of America's
    passage, which does not name its chairman; his passage names the bank), scaled by how little the
    question describes it already and never above the source. ``keep_headers`` brings a
    passage's header (``Document [3](Title: ...)``) along with any kept sentence of it.
    ``embeddings="minilm"`` runs the full model instead of the static table for the cosines (about a second
    per prompt; for comparison). Without a question, units score by how central they are (cosine to the
    mean embedding) and by their rare words. With the prompt's own question, units are kept in order of
    score until one does not fit, and what is left goes to its head (``stops_at_misfit``). Milliseconds
    per prompt: the embeddings are a table lookup. The weights were chosen on NQ questions apart from the
    reported ones (``benchmarks/retention.py``); ``hop_weight`` and ``link_weight`` on multi-hop tuning
    questions too (``benchmarks/multihop.py``).
    """

    semantic_weight: float = param(0.7, low=0.0, high=1.0)
    match_weight: float = param(0.8, low=0.0, high=1.0)
    passage_weight: float = param(0.8, low=0.0, high=1.0)
    title_weight: float = param(0.3, low=0.0, high=1.0)
    answer_weight: float = param(0.2, low=0.0, high=1.0)
    hop_weight: float = param(0.25, low=0.0, high=1.0)
    link_weight: float = param(0.8, low=0.0, high=1.0)
    embeddings: str = param("static", choices=EMBEDDINGS)
    keep_headers: bool = param(True)
    k1: float = param(1.2, low=0.0, high=3.0)
    b: float = param(0.75, low=0.0, high=1.0)

    def _score(self, candidates: Candidates) -> list[float]:
        units = candidates.units
        if not units:
            return []
        passages = candidates.scratch.setdefault("passages", find_passages(units))
        of_unit = np.array(passages.of_unit)
        count = len(passages.header_unit)
        question = LABEL.sub(" ", candidates.question)  # "Question: ... Answer:" labels are no topic
        asked = Counter(terms(question))
        query = set(asked)
        words_of = [terms(u.text) for u in units]
        bags = [Counter(w) for w in words_of]
        joined: list[Counter[str]] = [Counter() for _ in range(count)]
        for bag, p in zip(bags, passages.of_unit, strict=True):
            joined[p].update(bag)
        lexical = bm25(bags, query, self.k1, self.b)
        lexical_passage = bm25(joined, query, self.k1, self.b)

        words = WordVectors.of([*bags, asked])
        if self.embeddings == "minilm":  # unit vectors: a passage is their sum weighted by length
            from .._embeddings import default_embedder

            model = default_embedder()
            sums = model.embed([u.text for u in units]) * np.array([[u.tokens] for u in units], np.float32)
            question_sum = model.embed([question])[0] if asked else None
        else:
            sums = words.sums(bags)
            question_sum = words.sums([asked])[0] if asked else None
        passage_sums = np.zeros((count, sums.shape[1]), dtype=sums.dtype)
        np.add.at(passage_sums, of_unit, sums)
        target = _normalized(question_sum if question_sum is not None else sums.sum(axis=0))
        semantic = _normalized(sums) @ target
        semantic_passage = _normalized(passage_sums) @ target
        match, match_passage = words.soft_match(bags, of_unit, count, list(asked))
        sentence = self._relevance(lexical, semantic, match)
        passage = self._relevance(lexical_passage, semantic_passage, match_passage)
        if query:
            passage = passage + self.title_weight * title_cover(passages.header_text, query)
            if count > 1:  # the second hop: what the most relevant passage leads to
                passage = self._second_hop(passage, passages, units, words_of, joined, query)
        inherited = passage[of_unit]
        scores = (1 - self.passage_weight) * sentence + self.passage_weight * inherited
        if query:
            scores = scores + self.answer_weight * inherited * _scaled(answer_words(units, query))
        return [float(s) for s in scores]

    def _second_hop(
        self,
        passage: np.ndarray,
        passages: Passages,
        units: Sequence[Unit],
        words_of: Sequence[list[str]],
        bags: Sequence[Counter[str]],
        query: set[str],
    ) -> np.ndarray:
        """Lift the passages the most relevant one leads to: those whose title it names (``hop_weight``)
        and those sharing a rare name with it (``link_weight``), the latter only as far as the question
        does not describe them already and never above the source."""
        best = int(np.argmax(passage))
        top = float(passage[best])
        if top <= 0:
            return passage
        text = " ".join(u.text for u, p in zip(units, passages.of_unit, strict=True) if p == best)
        if self.hop_weight:
            passage = passage + self.hop_weight * top * named_passages(
                passages.header_text, text, best, query
            )
        if self.link_weight:
            names = source_names(passages.header_text[best], text, query)
            linked = linked_passages(names, bags, passages.of_unit, words_of, best)
            lifted = passage + self.link_weight * top * linked * np.clip(1 - passage / top, 0.0, 1.0)
            passage = np.minimum(lifted, np.maximum(passage, top))
        return passage

    def _relevance(self, lexical: np.ndarray, semantic: np.ndarray, match: np.ndarray) -> np.ndarray:
        """Exact words, meaning and the soft word match, each scaled to the prompt's best, mixed."""
        w = self.semantic_weight
        mixed = (1 - w) * _scaled(lexical) + w * _scaled(semantic) + self.match_weight * _scaled(match)
        return _scaled(mixed)

    def _choose(self, candidates: Candidates) -> Choice:
        scores = self._scores(candidates)
        units = candidates.units
        if candidates.budget is None:
            return Choice({u.index: u.text for u in units}, scores)
        passages: Passages = candidates.scratch.get("passages") or find_passages(units)
        header_tokens = self._header_tokens(candidates, passages)
        position = {u.index: k for k, u in enumerate(units)}
        order = sorted(units, key=lambda u: (-scores[position[u.index]], u.index))
        allowance = Allowance(candidates.budget)
        kept: dict[int, str] = {}
        stop = stops_at_misfit(candidates)
        for unit in order:
            if kept.get(unit.index) == unit.text:  # a header that is the whole unit (a Markdown heading)
                continue
            passage = passages.of_unit[position[unit.index]]
            header = passages.header_unit[passage]
            header_only = header >= 0 and kept.get(header) == passages.header_text[passage]
            if header_only and unit.index == header:  # the header is kept already: pay for the rest
                if allowance.take(unit, max(0, unit.tokens - header_tokens[passage])):
                    kept[unit.index] = unit.text
                continue
            brings_header = self.keep_headers and header >= 0 and header != unit.index and header not in kept
            header_unit = units[position[header]] if brings_header else None
            if header_unit is not None and allowance.cost(unit) + header_tokens[passage] <= allowance.left:
                allowance.take(header_unit, header_tokens[passage])
                kept[header] = passages.header_text[passage]
            if allowance.take(unit):
                kept[unit.index] = unit.text
            elif stop:
                break
        fill_with_head(order, kept, allowance, candidates.model)
        return Choice(kept, scores)

    def _header_tokens(self, candidates: Candidates, passages: Passages) -> list[int]:
        if "header_tokens" not in candidates.scratch:
            encode = encoding_for_model(candidates.model).encode_ordinary
            candidates.scratch["header_tokens"] = [
                len(encode(t)) + 1 if t else 0 for t in passages.header_text
            ]
        tokens: list[int] = candidates.scratch["header_tokens"]
        return tokens


@dataclass(frozen=True, slots=True)
class WordVectors:
    """The static vectors of a prompt's distinct words: a text's vector is the sum of its words', and the
    words are what the soft match compares. Vectors are cached per word, and words recur across prompts
    far more than sentences do, so one tokenizer pass over the distinct words serves both."""

    position: dict[str, int]
    vectors: np.ndarray  # one row per distinct word

    @classmethod
    def of(cls, bags: Sequence[Counter[str]]) -> WordVectors:
        words = list(dict.fromkeys(itertools.chain.from_iterable(bags)))
        vectors = default_static_embedder().embed_sums(words)
        return cls({t: k for k, t in enumerate(words)}, vectors)

    def sums(self, bags: Sequence[Counter[str]]) -> np.ndarray:
        """Per bag, the sum of its words' vectors, each as often as it occurs (what the table gives the
        whole text, but for punctuation)."""
        out = np.zeros((len(bags), self.vectors.shape[1]), dtype=self.vectors.dtype)
        for k, bag in enumerate(bags):
            if bag:
                counts = np.fromiter(bag.values(), dtype=self.vectors.dtype, count=len(bag))
                out[k] = counts @ self.vectors[[self.position[t] for t in bag]]
        return out

    def soft_match(
        self, bags: Sequence[Counter[str]], of_unit: np.ndarray, count: int, asked: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per unit and per passage: each question word's best cosine among the unit's words, averaged
        with weights that grow with the word's rarity (the squared norm of its vector: the table weights a
        word piece by its frequency rank). Zeros without a question. A passage's best is the best of its
        units', so both levels come from one product."""
        filled = [k for k, bag in enumerate(bags) if bag]
        if not asked or not filled:
            return np.zeros(len(bags)), np.zeros(count)
        question = self.vectors[[self.position[t] for t in asked]]
        weights = np.einsum("ij,ij->i", question, question)
        weights = weights / (float(weights.sum()) or 1.0)
        # einsum, not a matrix product: BLAS would spread this small product over threads, which costs
        # milliseconds of waiting on a busy machine
        similar = np.einsum("ij,kj->ik", _normalized(self.vectors), _normalized(question))
        index = [self.position[t] for k in filled for t in bags[k]]
        starts = np.cumsum([0] + [len(bags[k]) for k in filled[:-1]])
        best = np.full((len(bags), len(asked)), -1.0)
        best[filled] = np.maximum.reduceat(similar[index], starts, axis=0)
        best_passage = np.full((count, len(asked)), -1.0)
        np.maximum.at(best_passage, of_unit, best)
        return best @ weights, best_passage @ weights


def title_of(header: str) -> str:
    """The title a passage header gives, without a trailing disambiguation ("" for none)."""
    match = TITLE.search(header) if header else None
    return next((g for g in match.groups() if g), "") if match else ""


def title_cover(headers: Sequence[str], query: set[str]) -> np.ndarray:
    """Per passage, the share of its title's words that the question uses (0 without a title)."""
    cover = np.zeros(len(headers))
    for k, header in enumerate(headers):
        title = terms(title_of(header))
        if title:
            cover[k] = sum(t in query for t in title) / len(title)
    return cover


def named_passages(headers: Sequence[str], text: str, source: int, query: set[str]) -> np.ndarray:
    """1 for each passage (but ``source``) whose title ``text`` names, word for word, and the question does
    not (a title made of question words is the question's own topic, which ``title_cover`` rewards;
    lexically retrieved distractors carry such titles), else 0."""
    words = f" {' '.join(terms(text))} "
    named = np.zeros(len(headers))
    for k, header in enumerate(headers):
        title = terms(title_of(header)) if k != source else []
        if title and f" {' '.join(title)} " in words and not set(title) <= query:
            named[k] = 1.0
    return named


#: a run of capitalised words, with connectors such as "of" inside: a name as running text writes it
NAME_PHRASE = re.compile(
    r"[A-Z](?:\.|[\w'\u2019&-]*)"  # a word, or an initial ("J.")
    r"(?:[ \t]+(?:(?:of|the|de|du|da|di|del|der|von|van|la|le)[ \t]+)*[A-Z0-9](?:\.|[\w'\u2019&-]*))*"
)


def source_names(header: str, text: str, query: set[str]) -> set[tuple[str, ...]]:
    """The names a passage holds (its title, and the runs of capitalised words of its text) as term
    tuples, less those made only of question words: the question's own topic is not a link."""
    found = [
        m.group()
        for m in NAME_PHRASE.finditer(text)
        if " " in m.group() or not _starts_sentence(text, m.start())
    ]
    names = {tuple(terms(name)) for name in [title_of(header), *found]}
    return {name for name in names if name and not set(name) <= query}


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` starts a sentence, a line or a passage (after its header), where a
    capital says nothing of a name."""
    before = text[max(0, at - 8) : at].rstrip(" \t")
    return not before or before[-1] in ".!?:;\"'([)]\n"


def linked_passages(
    names: set[tuple[str, ...]],
    bags: Sequence[Counter[str]],
    of_unit: Sequence[int],
    words_of: Sequence[list[str]],
    source: int,
) -> np.ndarray:
    """Per passage (``bags``: its terms counted; ``words_of``: each unit's terms in order), the rarity of
    the rarest of ``names`` it holds word for word, from 0 (none, or a name every passage holds) to 1 (a
    name no other passage holds): the bridge of a multi-hop question, whichever way it runs (the source
    names the passage's subject, as the film's passage names its lead actress; or the passage names the
    source's, as the actress's passage names the film). Linear in the prompt: a passage is searched for a
    name only when it holds all the name's words."""
    count = len(bags)
    out = np.zeros(count)
    if count < 3 or not names:
        return out
    holding: dict[str, set[int]] = {word: set() for name in names for word in name}
    for k, bag in enumerate(bags):
        if k != source:
            fewer, more = (bag, holding) if len(bag) < len(holding) else (holding, bag)
            for word in fewer:
                if word in more:
                    holding[word].add(k)
    bodies: list[list[str]] = [[] for _ in bags]
    for words, p in zip(words_of, of_unit, strict=True):
        bodies[p].extend(words)
    texts: dict[int, str] = {}

    def says(k: int, phrase: str) -> bool:
        if k not in texts:
            texts[k] = f" {' '.join(bodies[k])} "
        return phrase in texts[k]

    for name in names:
        holders = set.intersection(*(holding[word] for word in name))
        if len(name) > 1:
            phrase = f" {' '.join(name)} "
            holders = {k for k in holders if says(k, phrase)}
        if holders:
            rarity = math.log(count / len(holders)) / math.log(count)
            for k in holders:
                out[k] = max(out[k], rarity)
    return out


def answer_words(units: Sequence[Unit], query: set[str]) -> np.ndarray:
    """Per unit, log(1 + the names and numbers it holds that the question lacks), past any passage header
    and the sentence's first word (capitalised anyway)."""
    counts = np.zeros(len(units))
    for k, unit in enumerate(units):
        header = HEADER.match(unit.text)
        body = unit.text[header.end() if header else 0 :].lstrip()
        names = NAME.findall(body)
        first = 1 if names and body.startswith(names[0]) else 0
        counts[k] = sum(w.lower().strip(".,") not in query for w in names[first:])
    return np.log1p(counts)


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return out
