"""Multi-hop retention: does compression keep what a two-hop question needs?

Run: ``python benchmarks/multihop.py --set hotpotqa-test musique`` (``--rates``, ``--strategies``; a minute
or two per set).

The sets (``benchmarks/data``, each checked by sha256; sources and licences in its README):

- ``hotpotqa-first100``: the first 100 HotpotQA dev questions, distractor setting: ten Wikipedia paragraphs,
  two of which hold the supporting sentences. The second hop was designed on these, so they are tuning data.
- ``hotpotqa-dev``: 300 more dev questions of the same kind (a published 300-question split of the dev
  set); tuning data too.
- ``hotpotqa-test``: 500 more (a published 500-question split), less any question of the two tuning sets:
  held out, never looked at while choosing a setting.
- ``musique-dev`` and ``musique-test``: the even and the odd rows of 200 MuSiQue-Ans dev questions (2-4
  hops composed from single-hop questions, twenty paragraphs, the supporting ones marked), built
  differently from HotpotQA: the even rows are tuning data, the odd ones held out.
- ``2wiki``: 2WikiMultihopQA dev questions (two or more hops drawn from Wikidata, ten paragraphs; 164 with
  their paragraphs, of which 67 ask for an answer the question does not hold): held out.

In a bridge question ("the woman who portrayed Corliss Archer ... held what position?") the second hop's
paragraph (Shirley Temple) shares few words with the question. The prompt is laid out as ``nq-multidoc``'s
(instruction, ``Document [i](Title: ...)`` paragraphs in the dataset's order, the question) and compressed
at each rate (or ``auto``: the kept fraction is then reported) with the strategies of
``benchmarks/retention.py``. Questions answered "yes" or "no", and those whose answer is in the question
(which is always kept), say nothing about the context and are left out. Two measures, each with a Wilson
95% interval: "answer kept" (a gold answer or alias still in the prompt, the harness's ``contains`` check)
and "all evidence kept" (every supporting sentence, for HotpotQA, or supporting paragraph, for MuSiQue,
still in the prompt whole: the evidence of every hop).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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

DATA = Path(__file__).resolve().parent / "data"
STRATEGIES = ("hybrid", "hybrid-minilm", "embed", "bm25", "tfidf", "plain-bm25", "random")
RATES = (1 / 3, 0.25, 0.125)


@dataclass(frozen=True)
class Question:
    """One multi-hop question, whatever its source: titled paragraphs (each a list of sentences), the
    gold answers, and the texts that make up the evidence of every hop."""

    question: str
    answers: list[str]
    kind: str  # "bridge" or "comparison" (HotpotQA), "2hop", "3hop1", ... (MuSiQue)
    titles: list[str]
    paragraphs: list[list[str]]
    evidence: list[str]


def read(name: str, sha256: str) -> bytes:
    raw = gzip.decompress((DATA / name).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{name}: sha256 {digest}, expected {sha256}")
    return raw


def _field(value: Any) -> Any:
    """A nested field as stored: JSON already, or (one published split) its Python ``repr``."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def hotpotqa(row: dict[str, Any]) -> Question:
    context, facts = _field(row["context"]), _field(row["supporting_facts"])
    titles, paragraphs = list(context["title"]), [list(p) for p in context["sentences"]]
    sentences_of = dict(zip(titles, paragraphs, strict=True))
    evidence = [
        sentences_of[title][k].strip()
        for title, k in zip(facts["title"], facts["sent_id"], strict=True)
        if title in sentences_of and k < len(sentences_of[title])
    ]
    return Question(row["question"], [row["answer"]], row["type"], titles, paragraphs, evidence)


def musique(row: dict[str, Any]) -> Question:
    paragraphs = row["paragraphs"]
    return Question(
        row["question"],
        [row["answer"], *row.get("answer_aliases", [])],
        row["id"].split("__")[0],
        [p["title"] for p in paragraphs],
        [[p["paragraph_text"]] for p in paragraphs],
        [p["paragraph_text"].strip() for p in paragraphs if p["is_supporting"]],
    )


def _hotpotqa_set(name: str, sha256: str) -> Callable[[], list[Question]]:
    def load() -> list[Question]:
        raw = read(name, sha256)
        rows = json.loads(raw) if name.endswith(".json.gz") else [json.loads(x) for x in raw.splitlines()]
        return [hotpotqa(row) for row in rows]

    return load


first100 = _hotpotqa_set(
    "hotpotqa-dev-distractor-first100.json.gz",
    "32ed3ffab548f1d57ba65365bd581d17b428980fa7be881ab0c45f79d9fe6827",
)
dev300 = _hotpotqa_set(
    "hotpotqa-dev-distractor-rpt-dev.jsonl.gz",
    "c6fa5317cc316b65b3c82d441ea641aef4a588b4aaec9377bbd167637d8665e8",
)
_rpt_test = _hotpotqa_set(
    "hotpotqa-dev-distractor-rpt-test.jsonl.gz",
    "3ab48ee61e64301dff1efbb956ca5ebdfcd1569a2e9d7381fd882e070badfb2a",
)


def held_out500() -> list[Question]:
    """The 500-question split less the questions it shares with the tuning sets (held out)."""
    seen = {q.question for q in [*first100(), *dev300()]}
    return [q for q in _rpt_test() if q.question not in seen]


def musique200() -> list[Question]:
    raw = read(
        "musique-ans-dev-200.jsonl.gz", "bbc98ab676941cf3a481cb3361cfab334cd2a24c74ed42473e4d5c14cf7577d4"
    )
    return [musique(json.loads(line)) for line in raw.splitlines()]


def two_wiki() -> list[Question]:
    raw = read(
        "2wikimultihopqa-dev-200.jsonl.gz", "65dc34d5b9f275457b2c6524443916730f0d6a3a59281d828b38028d0fbf0e3b"
    )
    questions = []
    for line in raw.splitlines():
        row = json.loads(line)
        if not row.get("context"):
            continue  # a question stored without its paragraphs
        context, facts = _field(row["context"]), _field(row["supporting_facts"])
        sentences_of = {title: sentences for title, sentences in context}
        evidence = [
            sentences_of[t][k].strip() for t, k in facts if t in sentences_of and k < len(sentences_of[t])
        ]
        titles = [t for t, _ in context]
        paragraphs = [
            [s if k == 0 else f" {s}" for k, s in enumerate(p)] for _, p in context
        ]  # as HotpotQA's
        questions.append(
            Question(row["question"], [row["answer"]], row["type"], titles, paragraphs, evidence)
        )
    return questions


SETS: dict[str, Callable[[], list[Question]]] = {
    "hotpotqa-first100": first100,
    "hotpotqa-dev": dev300,
    "hotpotqa-test": held_out500,
    "musique-dev": lambda: musique200()[0::2],
    "musique-test": lambda: musique200()[1::2],
    "2wiki": two_wiki,
}


def example(number: int, q: Question) -> Example:
    """The prompt of one question."""
    body = "\n\n".join(
        f"Document [{m}](Title: {title}) {''.join(sentences).strip()}"
        for m, (title, sentences) in enumerate(zip(q.titles, q.paragraphs, strict=True), start=1)
    )
    question = f"Question: {q.question}\nAnswer:"
    content = f"{NQ_INSTRUCTION}\n\n{body}\n\n{question}"
    return Example(f"multihop-{number}", [{"role": "user", "content": content}], question, q.answers)


def rate_arg(text: str) -> Rate:
    return "auto" if text == "auto" else float(text)


def usable(q: Question) -> bool:
    """An answer the context must supply: not yes/no, not already in the question."""
    answer = q.answers[0].strip().lower()
    return answer not in ("yes", "no") and answer not in q.question.lower()


def measure(
    name: str, run: Callable[[Example, Rate], str], rate: Rate, items: list[tuple[Example, Question]]
) -> dict[str, Any]:
    """One strategy at one rate over a set: the table's cells and each question's outcome."""
    encode = encoding_for_model(MODEL).encode_ordinary
    answers, evidence, millis, kept = [], [], [], []
    for item, q in items:
        t = time.perf_counter()
        out = run(item, rate)
        millis.append(1000 * (time.perf_counter() - t))
        answers.append(contains_answer(out, item.answers))
        evidence.append(all(text in out for text in q.evidence))
        kept.append(len(encode(out)) / len(encode(str(item.messages[0]["content"]))))
    n = len(items)
    cells = [
        f"{sum(k) / n:.1%} [{100 * low:.1f}, {100 * high:.1f}]"
        for k in (answers, evidence)
        for low, high in [wilson(sum(k), n)]
    ]
    budget = f"auto ({statistics.mean(kept):.2f} kept)" if rate == "auto" else f"{1 / rate:.0f}x"
    row = f"| `{name}` | {budget} | {cells[0]} | {cells[1]} | {sorted(millis)[n // 2]:.1f} |"
    return {"strategy": name, "rate": rate, "row": row, "answer_kept": answers, "evidence_kept": evidence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set", nargs="+", choices=list(SETS), default=["hotpotqa-test", "musique-test", "2wiki"]
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument(
        "--rates", nargs="+", type=rate_arg, default=list(RATES), help='kept fractions, or "auto"'
    )
    parser.add_argument("--json", type=Path, help="write each question's outcomes here (paired comparisons)")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {}
    runs = compressors(args.strategies)
    for set_name in args.set:
        questions = [q for q in SETS[set_name]() if usable(q)]
        items = [(example(n, q), q) for n, q in enumerate(questions)]
        kinds = Counter(q.kind for q in questions)
        print(
            f"\n{set_name}: {len(items)} questions ({', '.join(f'{c} {k}' for k, c in sorted(kinds.items()))})\n"
        )
        print("| strategy | compression | answer kept [95% CI] | all evidence kept [95% CI] | median ms |")
        print("|---|---:|---:|---:|---:|")
        results[set_name] = []
        for name, run in runs.items():
            run(items[0][0], 0.5)  # load models and tables outside the timing
            for rate in args.rates:
                if rate == "auto" and name in NO_AUTO:
                    continue
                result = measure(name, run, rate, items)
                print(result["row"])
                results[set_name].append(result)
    print(f"\n{time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
