"""Gold-answer retention and latency of question-aware strategies on NQ-open, with 95% intervals.

    python benchmarks/retention.py                              # n = 300, random distractors, 10 passages
    python benchmarks/retention.py --distractors random retrieved --documents 10 20 \
        --strategies bm25 tfidf embed hybrid --rates 0.25 0.125 --json out.json
    python benchmarks/retention.py --strategies hybrid bm25 --n 60 --every-position --plots plots/
    python benchmarks/retention.py --strategies bm25 hybrid --rates auto 0.25 0.125 \
        --distractors random retrieved      # rate="auto": retention next to the achieved ratios
    python benchmarks/retention.py --seed 1 --n 600 --exclude-seed 0 --strategies hybrid \
        --distractors random retrieved      # tuning questions: seed 1 without the report's questions

Each prompt is the harness's ``nq-multidoc``: one NQ-open question's gold passage among ``documents - 1``
distractors, the gold passage first, in the middle or last in turn (0/4/9 of 10, 0/9/19 of 20: a third of
the questions each; with ``--every-position``, every question at all three, so positions are compared on
the same questions). Distractors are other questions' gold passages, drawn at random or retrieved (the pool
passages most similar to the question by BM25 that contain no gold answer: harder, they share the
question's words); for a seed both hold the same questions at the same positions, so the two are compared
pair by pair. Budgets count cl100k tokens (``gpt-4``). "Retained" = a gold answer (normalised) still
appears in the compressed prompt; the interval is Wilson's, per gold position too; "retrieved - random" is
the paired difference with a bootstrap interval and McNemar's exact test. Latency is the median wall time of
one ``compress`` call (with ``--cold``, the embedding caches emptied before each), and its ratio to one
tiktoken encoding pass of the same prompt, measured in the same run (robust to a busy machine).

Settings are chosen on other questions than the reported ones: ``--seed 1`` draws another sample, and
``--exclude-seed 0`` leaves out of it the questions that the report (seed 0, n = 300) holds, since two
samples of the same pool share some (79 of 600 seed-1 questions are among the 300 of seed 0).

``--rates auto`` runs the registered strategies with ``rate="auto"`` (each prompt gets its own budget); the
kept fraction of the prompt's tokens is reported as mean, median, 10th and 90th percentile for every row, so
an adaptive budget's retention can be read next to what it kept. ``--order`` passes ``order`` to the
registered strategies: it moves kept passages, so it changes latency but not retention (its effect needs a
reader: ``occ eval``).

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
from pathlib import Path
from typing import Any, Literal

from occ_research._embeddings import EMBEDDERS
from occ_research._static_embeddings import STATIC_EMBEDDERS
from occ_research._tokens import encoding_for_model
from occ_research.evals._datasets import DISTRACTORS, Example, load_examples
from occ_research.evals._metrics import contains_answer
from occ_research.evals._report import POSITION_COLUMNS, plot_gold_positions, strategy_colors
from occ_research.evals._stats import bootstrap_mean, mcnemar_exact, paired_difference, wilson
from occ_research.strategies import make_strategy

MODEL = "gpt-4"  # cl100k_base
RATES = (0.25, 0.125, 0.0625)
REPORT_N = 300  # questions in the reported run (seed 0)
DEFAULT_STRATEGIES = ("hybrid", "hybrid-minilm", "embed", "bm25", "bm25-b0", "tfidf", "plain-bm25", "random")

Rate = float | Literal["auto"]  # a kept fraction, or a budget set per prompt
Compressor = Callable[[Example, Rate], str]
NO_AUTO = frozenset({"plain-bm25", "random"})  # no per-prompt budget (random refuses rate="auto")


# -- prompts ----------------------------------------------------------------------------------------------


def positions(documents: int) -> tuple[int, int, int]:
    """First, middle and last (0-based): the three points of the lost-in-the-middle curve."""
    return (0, max(0, documents // 2 - 1), documents - 1)


def examples(
    n: int,
    seed: int,
    documents: int,
    distractors: str,
    every_position: bool = False,
    exclude_seed: int | None = None,
) -> list[Example]:
    """``nq-multidoc`` prompts, the gold passage first, in the middle or last in turn; with
    ``every_position``, each question at each of the three positions (3n prompts, the same distractors in
    the same order), so that positions are compared on the same questions. ``exclude_seed`` leaves out
    the questions of that seed's report set (``REPORT_N`` questions): tuning never sees them."""
    drawn = load_examples(
        "nq-multidoc",
        n=n,
        documents=documents,
        gold_position=list(positions(documents)),
        seed=seed,
        distractors=distractors,
        every_position=every_position,
    )
    if exclude_seed is None:
        return drawn
    held_out = {e.id for e in examples(REPORT_N, exclude_seed, documents, "random")}
    return [e for e in drawn if e.id.rsplit("-at", 1)[0] not in held_out]


_WORDS = re.compile(r"\w+")


# -- compressors ------------------------------------------------------------------------------------------


def registered(name: str, **params: Any) -> Compressor:
    strategy = make_strategy(name, **params)

    def run(example: Example, rate: Rate) -> str:
        result = strategy.compress(example.messages, rate=rate, model=MODEL)
        return str(result.messages[0]["content"])

    return run


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def plain_bm25(example: Example, rate: Rate) -> str:
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
    left = int(float(rate) * len(encode(content))) - len(encode(question)) - 2
    kept = set()
    for k in sorted(range(n), key=lambda k: -scores[k]):
        cost = len(encode(sentences[k])) + 1
        if cost <= left:
            kept.add(k)
            left -= cost
    return " ".join(sentences[k] for k in sorted(kept)) + "\n\n" + question


def compressors(names: Sequence[str], order: str = "original") -> dict[str, Compressor]:
    """The compressors by name; ``order`` goes to every registered strategy (the default leaves it out, so
    strategies without the parameter run too)."""
    extra = {} if order == "original" else {"order": order}
    special: dict[str, Callable[[], Compressor]] = {
        "plain-bm25": lambda: plain_bm25,
        "bm25-b0": lambda: registered("bm25", b=0.0, **extra),
        "hybrid-minilm": lambda: registered("hybrid", embeddings="minilm", **extra),
        "hybrid-no-link": lambda: registered("hybrid", link_weight=0.0, **extra),  # the hop's name links off
    }
    return {n: special[n]() if n in special else registered(n, **extra) for n in names}


# -- the run ----------------------------------------------------------------------------------------------


def clear_embedding_caches() -> None:
    for embedders in (EMBEDDERS, STATIC_EMBEDDERS):
        for key in ("all-MiniLM-L6-v2", "static-minilm"):
            held = embedders.get(key)
            if held is not None:
                held.clear_cache()


def measure(
    examples: Sequence[Example],
    names: Sequence[str],
    rates: Sequence[Rate],
    cold: bool = False,
    setting: dict[str, Any] | None = None,
    order: str = "original",
) -> list[dict[str, Any]]:
    """One row per strategy x rate: retention with its Wilson interval, per gold position too, the
    per-example outcomes (for paired comparisons between settings), the kept fraction's distribution and
    the latency."""
    encode = encoding_for_model(MODEL).encode_ordinary
    rows = []
    for name, run in compressors(names, order).items():
        run(examples[0], 0.5)  # load models and tables outside the timing
        for rate in rates:
            if rate == "auto" and name in NO_AUTO:
                print(f"{name}: no rate='auto', skipped", file=sys.stderr)
                continue
            kept, millis, ratios, sizes = [], [], [], []
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
                kept.append(int(contains_answer(out, example.answers)))
                millis.append(1000 * seconds)
                ratios.append(seconds / encoding)
                sizes.append(len(encode(out)) / len(encode(content)))
            low, high = wilson(sum(kept), len(kept))
            deciles = statistics.quantiles(sizes, n=10) if len(sizes) > 1 else [sizes[0]] * 9
            rows.append(
                {
                    **(setting or {}),
                    "order": order,
                    "strategy": name,
                    "rate": rate,
                    "n": len(examples),
                    "retained": sum(kept) / len(kept),
                    "low": low,
                    "high": high,
                    "by_position": _by_position(examples, kept),
                    "median_ms": statistics.median(millis),
                    "median_x_encode": statistics.median(ratios),
                    "mean_kept_fraction": statistics.fmean(sizes),
                    "median_kept_fraction": statistics.median(sizes),
                    "p10_kept_fraction": deciles[0],
                    "p90_kept_fraction": deciles[-1],
                    "examples": [e.id for e in examples],
                    "gold_positions": [e.gold_position for e in examples],
                    "kept": kept,
                }
            )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _by_position(examples: Sequence[Example], kept: Sequence[int]) -> dict[str, dict[str, float]]:
    cells: dict[int, list[int]] = {}
    for example, k in zip(examples, kept, strict=True):
        cells.setdefault(int(example.gold_position or 0), []).append(k)
    out = {}
    for position, values in sorted(cells.items()):
        low, high = wilson(sum(values), len(values))
        out[str(position)] = {
            "n": len(values),
            "retained": sum(values) / len(values),
            "low": low,
            "high": high,
        }
    return out


def paired(rows: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Retrieved minus random distractors, pair by pair (the same questions at the same positions): the
    difference in retention with a 95% bootstrap interval and McNemar's exact p-value."""
    by_key = {(r["distractors"], r["documents"], r["strategy"], r["rate"]): r for r in rows}
    out = []
    for (kind, documents, strategy, rate), retrieved in by_key.items():
        drawn = by_key.get(("random", documents, strategy, rate))
        if kind != "retrieved" or drawn is None:
            continue
        if retrieved["examples"] != drawn["examples"]:
            raise ValueError(
                "random and retrieved runs hold different questions: use the same --n and --seed"
            )
        difference = paired_difference(retrieved["kept"], drawn["kept"], seed=seed)
        out.append(
            {
                "documents": documents,
                "strategy": strategy,
                "rate": rate,
                "n": len(retrieved["kept"]),
                "difference": difference.value,
                "low": difference.low,
                "high": difference.high,
                "mcnemar_p": mcnemar_exact(retrieved["kept"], drawn["kept"]),
            }
        )
    return out


def position_pairs(rows: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """With ``--every-position``: gold in the middle, and last, minus gold first, on the same questions (95%
    paired bootstrap interval, McNemar's exact p): the position effect without question difficulty."""
    out = []
    for row in rows:
        by_question: dict[str, dict[int, int]] = {}
        for name, position, k in zip(row["examples"], row["gold_positions"], row["kept"], strict=True):
            by_question.setdefault(name.rsplit("-at", 1)[0], {})[int(position)] = k
        first, middle, last = positions(row["documents"])
        complete = [q for q in by_question.values() if {first, middle, last} <= q.keys()]
        if not complete or len(complete) == len(row["kept"]):
            continue  # positions cycled over different questions: nothing to pair
        record = {key: row[key] for key in ("strategy", "rate", "distractors", "documents")}
        for label, position in (("middle", middle), ("last", last)):
            later = [q[position] for q in complete]
            base = [q[first] for q in complete]
            difference = paired_difference(later, base, seed=seed)
            record[label] = (difference.value, difference.low, difference.high, mcnemar_exact(later, base))
        out.append({**record, "n": len(complete)})
    return out


def position_table(rows: Sequence[dict[str, Any]], seed: int = 0) -> Any:
    """The rows in the shape of the report's ``by_gold_position`` (one "dataset" per setting), so that the
    report's lost-in-the-middle plot draws them."""
    import pandas as pd

    records = []
    for row in rows:
        cells: dict[int, list[int]] = {}
        for position, k in zip(row["gold_positions"], row["kept"], strict=True):
            cells.setdefault(int(position), []).append(k)
        for position, values in sorted(cells.items()):
            interval = bootstrap_mean(values, seed=seed)
            records.append(
                {
                    "dataset": f"{row['distractors']} distractors, {row['documents']} documents",
                    "strategy": row["strategy"],
                    "budget": math.nan if row["rate"] == "auto" else row["rate"],
                    "gold_position": position,
                    "n": len(values),
                    "answer_kept": interval.value,
                    "answer_kept_low": interval.low,
                    "answer_kept_high": interval.high,
                    "n_read": 0,
                    "metric": "contains",
                    "score": math.nan,
                    "score_low": math.nan,
                    "score_high": math.nan,
                }
            )
    return pd.DataFrame.from_records(records, columns=POSITION_COLUMNS)


def _budget(rate: Rate) -> str:
    return "auto" if rate == "auto" else f"{1 / float(rate):.0f}x"


def _fractions(row: dict[str, Any]) -> str:
    """The kept fraction: mean, and median [10th, 90th percentile] (they differ from prompt to prompt only
    with ``rate="auto"``)."""
    return (
        f"{row['mean_kept_fraction']:.3f}, {row['median_kept_fraction']:.3f} "
        f"[{row['p10_kept_fraction']:.3f}, {row['p90_kept_fraction']:.3f}]"
    )


def _percent(value: float, low: float, high: float) -> str:
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _line(row: dict[str, Any]) -> str:
    return (
        f"| {row['strategy']} | {row['distractors']} | {row['documents']} | {_budget(row['rate'])} | {row['n']} "
        f"| {_percent(row['retained'], row['low'], row['high'])} | {_fractions(row)} "
        f"| {row['median_ms']:.1f} | {row['median_x_encode']:.1f} |"
    )


def tables(rows: Sequence[dict[str, Any]], seed: int = 0) -> str:
    """The Markdown tables of a run: every measurement, retention side by side, retrieved - random paired,
    and retention by gold position."""
    lines = [
        "| strategy | distractors | documents | compression | n | answer kept [95% CI] "
        "| kept fraction: mean, median [p10, p90] | median ms | x one encoding |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *(_line(r) for r in rows),
        "",
    ]
    settings = list(dict.fromkeys((r["distractors"], r["documents"]) for r in rows))
    cells = {(r["strategy"], r["rate"], r["distractors"], r["documents"]): r for r in rows}
    lines += [
        "| strategy | compression | " + " | ".join(f"{d}, {k} docs" for d, k in settings) + " |",
        "|---|---:|" + "---:|" * len(settings),
    ]
    for strategy, rate in dict.fromkeys((r["strategy"], r["rate"]) for r in rows):
        values = [cells.get((strategy, rate, d, k)) for d, k in settings]
        lines.append(
            f"| `{strategy}` | {_budget(rate)} | "
            + " | ".join("" if v is None else _percent(v["retained"], v["low"], v["high"]) for v in values)
            + " |"
        )
    differences = paired(rows, seed)
    if differences:
        lines += [
            "",
            "| strategy | compression | documents | n | retrieved - random [95% CI] | McNemar p |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| `{d['strategy']}` | {_budget(d['rate'])} | {d['documents']} | {d['n']} "
            f"| {100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] "
            f"| {d['mcnemar_p']:.2g} |"
            for d in differences
        ]
    lines += [
        "",
        "| strategy | compression | distractors | documents | gold first | gold in the middle | gold last |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        spots = [r["by_position"][str(p)] for p in positions(r["documents"])]
        lines.append(
            f"| `{r['strategy']}` | {_budget(r['rate'])} | {r['distractors']} | {r['documents']} | "
            + " | ".join(f"{_percent(c['retained'], c['low'], c['high'])} (n={c['n']})" for c in spots)
            + " |"
        )
    pairs = position_pairs(rows, seed)
    if pairs:
        lines += [
            "",
            "| strategy | compression | distractors | documents | n questions | middle - first [95% CI] | p "
            "| last - first [95% CI] | p |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for pair in pairs:
            spans = [
                f"{100 * v:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {p:.2g}"
                for v, lo, hi, p in (pair["middle"], pair["last"])
            ]
            lines.append(
                f"| `{pair['strategy']}` | {_budget(pair['rate'])} | {pair['distractors']} | {pair['documents']} "
                f"| {pair['n']} | " + " | ".join(spans) + " |"
            )
    return "\n".join(lines)


def _rate(text: str) -> Rate:
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a rate is a number in (0, 1] or 'auto', got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=REPORT_N)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exclude-seed",
        type=int,
        help=f"leave out the questions of this seed's report set (n = {REPORT_N}): for tuning",
    )
    parser.add_argument("--distractors", nargs="+", choices=DISTRACTORS, default=["random"])
    parser.add_argument("--documents", nargs="+", type=int, default=[10])
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--rates", nargs="+", type=_rate, default=list(RATES), help="numbers or 'auto'")
    parser.add_argument(
        "--order",
        choices=("original", "relevance", "edges"),
        default="original",
        help="order of kept passages",
    )
    parser.add_argument("--cold", action="store_true", help="empty the embedding caches before every call")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--every-position", action="store_true", help="each question at each gold position (3n prompts)"
    )
    parser.add_argument("--plots", help="write the lost-in-the-middle plots (one per setting) to this folder")
    args = parser.parse_args()
    rows = []
    for documents in args.documents:
        for distractors in args.distractors:
            prompts = examples(
                args.n, args.seed, documents, distractors, args.every_position, args.exclude_seed
            )
            setting = {"distractors": distractors, "documents": documents}
            rows += measure(prompts, args.strategies, args.rates, args.cold, setting, args.order)
    held_out = "" if args.exclude_seed is None else f", without seed {args.exclude_seed}'s questions"
    print(f"NQ-open (nq-multidoc), gold first / middle / last in turn, seed {args.seed}{held_out}\n")
    print(tables(rows, args.seed))
    if args.json:
        with open(args.json, "w") as handle:
            extra = {"paired": paired(rows, args.seed), "positions": position_pairs(rows, args.seed)}
            json.dump({"args": vars(args), "rows": rows, **extra}, handle, indent=1)
    if args.plots:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        for path in plot_gold_positions(
            position_table(rows, args.seed), folder, strategy_colors(args.strategies)
        ):
            print(f"plot: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
