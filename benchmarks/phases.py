"""Where the time of one compression goes, step by step, next to one tiktoken pass over the same text.

Run: ``python benchmarks/phases.py --size 100000 --source qmsum --strategy bm25``. Each step is timed alone
(median of ``--repeat`` calls) on the prompt of ``benchmarks/test_latency.py``: ``prepare`` (validate,
count the prompt, plan), ``split`` (the slots into atoms), ``layout`` (split, count and build the units),
``score`` (a ranker's scores), ``choose`` (one choice at the budget, scores known), ``render`` (the choice
back into texts) and ``trace``; ``whole`` is ``compress`` itself, which also renders and counts once per
fitting round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from occ_research._text import split_text
from occ_research._tokens import encoding_for_model
from occ_research.strategies import RankingStrategy, make_strategy
from occ_research.strategies._layout import Layout
from occ_research.strategies._prepare import prepare
from occ_research.strategies._results import trace_of
from occ_research.strategies._selection import Candidates

try:
    from benchmarks.test_latency import prompt
except ImportError:  # run as a script from the repository root
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.test_latency import prompt


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--source", choices=["qmsum", "sharegpt"], default="qmsum")
    parser.add_argument("--strategy", default="bm25")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    messages, question = prompt(args.source, args.size)
    strategy = make_strategy(args.strategy)
    options: Any = {"rate": 0.25, "question": question}
    job = prepare(messages, options)
    granularity = strategy._granularity()

    def layout() -> Layout:
        return Layout(job.slots, job.plans, granularity, job.model, "original", job.memo)

    built = layout()
    budget = int(job.original_tokens * 0.25)
    candidates = Candidates(
        built.units, budget, job.question, job.model, job.seed, True, survey=built.surroundings
    )
    choice = strategy._choose(candidates)  # a ranker's scores now sit in the candidates' scratch space
    text = "\n".join(m["content"] for m in messages)
    steps: dict[str, Callable[[], Any]] = {
        "one encoding pass": lambda: encoding_for_model(job.model).encode_ordinary(text),
        "whole": lambda: strategy.compress(messages, **options),
        "prepare": lambda: prepare(messages, options),
        "split": lambda: [
            split_text(s.text, p.protected) for s, p in zip(job.slots, job.plans, strict=True) if p.free
        ],
        "layout": layout,
    }
    if isinstance(strategy, RankingStrategy):
        steps["score"] = lambda: strategy._score(candidates)
    steps["choose"] = lambda: strategy._choose(candidates)  # the selection alone: the scores are kept
    steps["render"] = lambda: built.render(choice.kept, choice.blocks, choice.scores)
    steps["trace"] = lambda: trace_of(strategy.name, built.units, choice)
    timed = {name: median_ms(fn, args.repeat) for name, fn in steps.items()}
    encode = timed["one encoding pass"]
    print(f"{args.strategy}, {args.source}, {job.original_tokens} tokens, {len(built.units)} units")
    print("| step | ms | x encode |\n|---|---:|---:|")
    for name, ms in timed.items():
        print(f"| {name} | {ms:.1f} | {ms / encode:.2f} |")


if __name__ == "__main__":
    main()
