"""Gold-answer retention and latency of question-aware strategies on NQ-open, with 95% intervals.

    python benchmarks/retention.py                              # n = 300, random distractors, 4x/8x/16x
    python benchmarks/retention.py --distractors retrieved      # the most similar answer-free passages
    python benchmarks/retention.py --strategies hybrid bm25 --n 60 --json out.json

Each prompt holds one NQ-open question's gold passage among 9 distractors (10 passages, the harness's
``nq-multidoc`` format), the gold passage at position 0, 4 or 9 in turn (a third of the questions each).
Distractors are other questions' gold passages: drawn at random (as ``nq-multidoc`` does), or, with
``--distractors retrieved``, the passages of the pool most similar to the question by BM25 that contain no
gold answer (harder: they look alike). Budgets count cl100k tokens (``gpt-4``). "Retained" = a gold answer
(normalised) still appears in the compressed prompt; the interval is Wilson's. Latency is the median wall
time of one ``compress`` call (with ``--cold``, the embedding caches emptied before each), and its ratio to one tiktoken encoding pass of the same prompt, measured in
the same run (robust to a busy machine).

Baselines besides the registered strategies: ``plain-bm25``, a plain BM25 sentence ranker (Okapi as in
rank_bm25, lower-cased word tokens, keep the best sentences that fit); ``bm25-b0``, ``bm25`` without length
normalisation (does scoring per token favour short fragments?); ``hybrid-minilm``, ``hybrid`` with the full
MiniLM instead of the static table.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from occ_research._embeddings import EMBEDDERS
from occ_research._static_embeddings import STATIC_EMBEDDERS
from occ_research._tokens import encoding_for_model
from occ_research.evals._datasets import NQ_INSTRUCTION, Example, _rows, load_examples
from occ_research.evals._metrics import contains_answer
from occ_research.strategies import make_strategy

MODEL = "gpt-4"  # cl100k_base
POSITIONS = (0, 4, 9)
RATES = (0.25, 0.125, 0.0625)
DEFAULT_STRATEGIES = ("hybrid", "hybrid-minilm", "embed", "bm25", "bm25-b0", "tfidf", "plain-bm25", "random")

Compressor = Callable[[Example, float], str]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# -- prompts ----------------------------------------------------------------------------------------------


def random_distractor_examples(n: int, seed: int) -> list[Example]:
    """``nq-multidoc`` prompts: the same questions and distractors for each gold position, a third each."""
    by_position = [
        load_examples("nq-multidoc", n=n, documents=10, gold_position=p, seed=seed) for p in POSITIONS
    ]
    return [by_position[i % len(POSITIONS)][i] for i in range(n)]


_WORDS = re.compile(r"\w+")


def retrieved_distractor_examples(n: int, seed: int) -> list[Example]:
    """The same questions, with the 9 pool passages most similar to the question (BM25) that hold no answer."""
    rows = _rows("lost_in_the_middle/nq-open-oracle.jsonl.gz")
    pool = [row["ctxs"][0] for row in rows]
    bags = [Counter(_WORDS.findall(f"{p['title']} {p['text']}".lower())) for p in pool]
    df = Counter(t for bag in bags for t in bag)
    idf = {t: math.log(1 + (len(bags) - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    postings: dict[str, list[int]] = {}
    for j, bag in enumerate(bags):
        for t in bag:
            postings.setdefault(t, []).append(j)
    avg = sum(sum(b.values()) for b in bags) / len(bags)
    examples = []
    for i, base in enumerate(random_distractor_examples(n, seed)):
        row = rows[int(base.id.removeprefix("nq-"))]
        scores: Counter[int] = Counter()
        for t in set(_WORDS.findall(row["question"].lower())):
            for j in postings.get(t, []):
                tf, length = bags[j][t], sum(bags[j].values())
                scores[j] += idf[t] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
        gold = row["ctxs"][0]
        distractors = []
        for j, _ in scores.most_common():
            text = f"{pool[j]['title']} {pool[j]['text']}"
            if pool[j]["text"] != gold["text"] and not contains_answer(text, row["answers"]):
                distractors.append(pool[j])
            if len(distractors) == 9:
                break
        passages = list(distractors)
        passages.insert(POSITIONS[i % len(POSITIONS)], gold)
        body = "\n\n".join(
            f"Document [{k}](Title: {p['title']}) {p['text']}" for k, p in enumerate(passages, start=1)
        )
        content = f"{NQ_INSTRUCTION}\n\n{body}\n\n{base.question}"
        examples.append(Example(base.id, [{"role": "user", "content": content}], base.question, base.answers))
    return examples


# -- compressors ------------------------------------------------------------------------------------------


def registered(name: str, **params: Any) -> Compressor:
    strategy = make_strategy(name, **params)

    def run(example: Example, rate: float) -> str:
        result = strategy.compress(example.messages, rate=rate, model=MODEL)
        return str(result.messages[0]["content"])

    return run


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def plain_bm25(example: Example, rate: float) -> str:
    """A plain BM25 sentence ranker: rank_bm25's Okapi, word tokens, keep the best sentences that fit."""
    encode = encoding_for_model(MODEL).encode_ordinary
    content = str(example.messages[0]["content"])
    head, _, question = content.rpartition("\n\n")
    sentences = [s for s in _SENTENCE_END.split(head.replace("\n\n", " ")) if s]
    docs = [_WORDS.findall(s.lower()) for s in sentences]
    n, avg = len(docs), sum(map(len, docs)) / max(len(docs), 1)
    df = Counter(t for d in docs for t in set(d))
    idf = {t: math.log((n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    floor = 0.25 * sum(idf.values()) / max(len(idf), 1)
    idf = {t: v if v >= 0 else floor for t, v in idf.items()}
    query = _WORDS.findall(question.lower())
    scores = []
    for doc in docs:
        tf = Counter(doc)
        norm = 1.2 * (0.25 + 0.75 * len(doc) / avg)
        scores.append(sum(idf.get(q, 0) * tf[q] * 2.2 / (tf[q] + norm) for q in query))
    left = int(rate * len(encode(content))) - len(encode(question)) - 2
    kept = set()
    for k in sorted(range(n), key=lambda k: -scores[k]):
        cost = len(encode(sentences[k])) + 1
        if cost <= left:
            kept.add(k)
            left -= cost
    return " ".join(sentences[k] for k in sorted(kept)) + "\n\n" + question


def compressors(names: Sequence[str]) -> dict[str, Compressor]:
    special: dict[str, Callable[[], Compressor]] = {
        "plain-bm25": lambda: plain_bm25,
        "bm25-b0": lambda: registered("bm25", b=0.0),
        "hybrid-minilm": lambda: registered("hybrid", embeddings="minilm"),
    }
    return {n: special[n]() if n in special else registered(n) for n in names}


# -- the run ----------------------------------------------------------------------------------------------


def clear_embedding_caches() -> None:
    for embedders in (EMBEDDERS, STATIC_EMBEDDERS):
        for key in ("all-MiniLM-L6-v2", "static-minilm"):
            held = embedders.get(key)
            if held is not None:
                held.clear_cache()


def measure(
    examples: Sequence[Example], names: Sequence[str], rates: Sequence[float], cold: bool = False
) -> list[dict[str, Any]]:
    encode = encoding_for_model(MODEL).encode_ordinary
    rows = []
    for name, run in compressors(names).items():
        run(examples[0], rates[0])  # load models and tables outside the timing
        for rate in rates:
            kept, millis, ratios, sizes = 0, [], [], []
            for example in examples:
                content = str(example.messages[0]["content"])
                if cold:
                    clear_embedding_caches()
                started = time.perf_counter()
                encode(content)
                encoding = time.perf_counter() - started
                started = time.perf_counter()
                out = run(example, rate)
                seconds = time.perf_counter() - started
                kept += contains_answer(out, example.answers)
                millis.append(1000 * seconds)
                ratios.append(seconds / encoding)
                sizes.append(len(encode(out)) / len(encode(content)))
            low, high = wilson(kept, len(examples))
            rows.append(
                {
                    "strategy": name,
                    "rate": rate,
                    "n": len(examples),
                    "retained": kept / len(examples),
                    "low": low,
                    "high": high,
                    "median_ms": statistics.median(millis),
                    "median_x_encode": statistics.median(ratios),
                    "mean_kept_fraction": statistics.fmean(sizes),
                }
            )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    return (
        f"| {row['strategy']} | {1 / row['rate']:.0f}x | {row['n']} | {100 * row['retained']:.1f}% "
        f"[{100 * row['low']:.1f}, {100 * row['high']:.1f}] | {row['mean_kept_fraction']:.3f} "
        f"| {row['median_ms']:.1f} | {row['median_x_encode']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", choices=("random", "retrieved"), default="random")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--rates", nargs="+", type=float, default=list(RATES))
    parser.add_argument("--cold", action="store_true", help="empty the embedding caches before every call")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    build = retrieved_distractor_examples if args.distractors == "retrieved" else random_distractor_examples
    examples = build(args.n, args.seed)
    rows = measure(examples, args.strategies, args.rates, args.cold)
    print(f"NQ-open, 10 passages, {args.distractors} distractors, gold at {POSITIONS}, seed {args.seed}\n")
    print(
        "| strategy | compression | n | answer kept [95% CI] | kept fraction | median ms | x one encoding |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(_line(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
