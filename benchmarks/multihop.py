"""Multi-hop retention: does compression keep what a two-hop question needs?

Run: ``python benchmarks/multihop.py`` (``--rates``, ``--strategies``; about a minute).

HotpotQA dev questions, distractor setting (``benchmarks/data``: the first 100, checked by sha256; see
its README): each has ten Wikipedia paragraphs, two of which hold the supporting sentences; for a bridge
question ("the woman who portrayed Corliss Archer ... held what position?") the second hop's paragraph
(Shirley Temple) shares few words with the question. The prompt is laid out as ``nq-multidoc``'s
(instruction, ``Document [i](Title: ...)`` paragraphs in the dataset's order, the question) and compressed
at each rate (or ``auto``: the kept fraction is then reported) with the strategies of
``benchmarks/retention.py``. Questions answered "yes" or "no", and those
whose answer is in the question (which is always kept), say nothing about the context and are left out.
Two measures, each with a Wilson 95% interval: "answer kept" (a gold answer still in the prompt, the
harness's ``contains`` check) and "all supporting sentences kept" (every sentence the dataset marks as a
supporting fact still in the prompt, whole: the evidence of both hops).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from occ_research._tokens import encoding_for_model
from occ_research.evals._datasets import NQ_INSTRUCTION, Example
from occ_research.evals._metrics import contains_answer
from occ_research.evals._stats import wilson

try:
    from benchmarks.retention import MODEL, NO_AUTO, Rate, compressors
except ImportError:  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.retention import MODEL, NO_AUTO, Rate, compressors

DATA = Path(__file__).resolve().parent / "data" / "hotpotqa-dev-distractor-first100.json.gz"
SHA256 = "32ed3ffab548f1d57ba65365bd581d17b428980fa7be881ab0c45f79d9fe6827"
STRATEGIES = ("hybrid", "hybrid-minilm", "embed", "bm25", "tfidf", "plain-bm25", "random")
RATES = (1 / 3, 0.25, 0.125)


def load(path: Path = DATA) -> list[dict[str, Any]]:
    raw = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {SHA256}")
    rows: list[dict[str, Any]] = json.loads(raw)
    return rows


def example(number: int, row: dict[str, Any]) -> tuple[Example, list[str]]:
    """The prompt of one question, and its supporting sentences."""
    titles, paragraphs = row["context"]["title"], row["context"]["sentences"]
    body = "\n\n".join(
        f"Document [{m}](Title: {title}) {''.join(sentences).strip()}"
        for m, (title, sentences) in enumerate(zip(titles, paragraphs, strict=True), start=1)
    )
    question = f"Question: {row['question']}\nAnswer:"
    content = f"{NQ_INSTRUCTION}\n\n{body}\n\n{question}"
    sentences_of = dict(zip(titles, paragraphs, strict=True))
    facts = row["supporting_facts"]
    supporting = [
        sentences_of[title][k].strip()
        for title, k in zip(facts["title"], facts["sent_id"], strict=True)
        if title in sentences_of and k < len(sentences_of[title])
    ]
    return Example(
        f"hotpotqa-{number}", [{"role": "user", "content": content}], question, [row["answer"]]
    ), supporting


def rate_arg(text: str) -> Rate:
    return "auto" if text == "auto" else float(text)


def usable(row: dict[str, Any]) -> bool:
    """An answer the context must supply: not yes/no, not already in the question."""
    answer = row["answer"].strip().lower()
    return answer not in ("yes", "no") and answer not in row["question"].lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument(
        "--rates", nargs="+", type=rate_arg, default=list(RATES), help='kept fractions, or "auto"'
    )
    args = parser.parse_args()
    encode = encoding_for_model(MODEL).encode_ordinary
    rows = load()
    items = [example(n, row) for n, row in enumerate(rows) if usable(row)]
    bridge = sum(1 for row in rows if usable(row) and row["type"] == "bridge")
    print(f"{len(items)} of {len(rows)} questions ({bridge} bridge, {len(items) - bridge} comparison)\n")
    print(
        "| strategy | compression | answer kept [95% CI] | all supporting sentences kept [95% CI] | median ms |"
    )
    print("|---|---:|---:|---:|---:|")
    started = time.perf_counter()
    for name, run in compressors(args.strategies).items():
        run(items[0][0], 0.5)  # load models and tables outside the timing
        for rate in args.rates:
            if rate == "auto" and name in NO_AUTO:
                continue
            answers = evidence = 0
            millis, kept = [], []
            for item, supporting in items:
                t = time.perf_counter()
                out = run(item, rate)
                millis.append(1000 * (time.perf_counter() - t))
                answers += contains_answer(out, item.answers)
                evidence += all(sentence in out for sentence in supporting)
                kept.append(len(encode(out)) / len(encode(str(item.messages[0]["content"]))))
            n = len(items)
            cells = [
                f"{k / n:.1%} [{100 * low:.1f}, {100 * high:.1f}]"
                for k in (answers, evidence)
                for low, high in [wilson(k, n)]
            ]
            median = sorted(millis)[n // 2]
            budget = f"auto ({statistics.mean(kept):.2f} kept)" if rate == "auto" else f"{1 / rate:.0f}x"
            print(f"| `{name}` | {budget} | {cells[0]} | {cells[1]} | {median:.1f} |")
    print(f"\n{time.strftime('%Y-%m-%d')}, n = {len(items)}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
