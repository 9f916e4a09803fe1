"""Real datasets, loaded offline with the ``datasets`` library and mapped to one record shape.

Files are read from the shared data folder: ``OCC_DATA_DIR`` if set, else ``../shared/data`` next to the
working directory or next to the source checkout.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._messages import Message
from .._paths import data_dir
from .._registry import Registry
from ..exceptions import DatasetError

Loader = Callable[..., list["Example"]]

#: kinds of prompt: a winner is elected per kind, and the server classifies requests into the same kinds
KINDS = ("rag", "long-document", "chat", "few-shot", "structured")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader and what it is (task, kind of prompt, default metric, answer length).

    ``retention``: whether "a gold answer still appears in the compressed prompt" means anything (extractive
    QA and lookups, not summaries or chats).
    """

    name: str
    load: Loader
    task: str
    kind: str
    metric: str
    max_tokens: int = 64
    retention: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name}: kind must be one of {KINDS}, got {self.kind!r}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    task: str,
    kind: str,
    metric: str,
    max_tokens: int = 64,
    retention: bool = False,
) -> Callable[[Loader], Loader]:
    """Decorator: register a loader with what it is (see ``DatasetSpec``)."""

    def add(load: Loader) -> Loader:
        DATASETS.register(name)(DatasetSpec(name, load, task, kind, metric, max_tokens, retention))
        return load

    return add


NQ_INSTRUCTION = (
    "Write a high-quality answer for the given question using only the provided search results "
    "(some of which might be irrelevant)."
)


@dataclass(frozen=True)
class Example:
    """One evaluation item: the prompt to compress, the question, and what a right answer contains."""

    id: str
    messages: list[Message]
    question: str
    answers: list[str] = field(default_factory=list)  # gold answers or reference summaries
    task: str = "qa"  # qa | summary | chat | math | retrieval
    kind: str = "rag"  # one of KINDS: the kind of prompt, for a winner per kind


def _read_json(path: str | Path, limit: int | None = None) -> Any:
    """A local JSON Lines file (or .gz) as a ``datasets.Dataset``, its first ``limit`` rows if given.

    ``Dataset.from_json`` runs the same JSON builder as ``load_dataset("json", ...)`` but without
    ``load_dataset``'s download-count request to the hub, so it needs no network and no offline switch.
    """
    import datasets

    table = datasets.Dataset.from_json(str(path))
    return table if limit is None else table.select(range(len(table))[:limit])


def _rows(relative: str, limit: int | None = None) -> list[dict[str, Any]]:
    path = data_dir() / relative
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    return [dict(row) for row in _read_json(path, limit)]


def load_examples(name: str, **options: Any) -> list[Example]:
    """Load a registered dataset by name, e.g. ``load_examples("nq-multidoc", n=20, documents=10)``."""
    return DATASETS.get(name).load(**options)


@register_dataset("nq-multidoc", task="qa", kind="rag", metric="contains", max_tokens=32, retention=True)
def nq_multidoc(
    n: int = 50, documents: int = 10, gold_position: int | None = None, seed: int = 0
) -> list[Example]:
    """NQ-open questions, each with its gold passage among ``documents - 1`` distractors.

    Distractors are other questions' gold passages drawn at random, not retrieved ones, so the task is
    easier than the published 20-document benchmark. ``gold_position`` (0-based) fixes where the gold
    passage stands; None draws it at random.
    """
    rows = _rows("lost_in_the_middle/nq-open-oracle.jsonl.gz")
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), min(n, len(rows)))
    examples = []
    for i in picked:
        row = rows[i]
        others = rng.sample([j for j in range(len(rows)) if j != i], documents - 1)
        passages = [rows[j]["ctxs"][0] for j in others]
        position = rng.randrange(documents) if gold_position is None else min(gold_position, documents - 1)
        passages.insert(position, row["ctxs"][0])
        body = "\n\n".join(
            f"Document [{k}](Title: {p['title']}) {p['text']}" for k, p in enumerate(passages, start=1)
        )
        question = f"Question: {row['question']}\nAnswer:"
        content = f"{NQ_INSTRUCTION}\n\n{body}\n\n{question}"
        examples.append(
            Example(f"nq-{i}", [{"role": "user", "content": content}], question, list(row["answers"]))
        )
    return examples


@register_dataset("qmsum", task="summary", kind="long-document", metric="rougel", max_tokens=200)
def qmsum(n: int = 20, split: str = "test") -> list[Example]:
    """Query-focused meeting summarisation: a long transcript, a specific query, reference answers."""
    examples = []
    for m, row in enumerate(_rows(f"qmsum/{split}.jsonl")):
        transcript = "\n".join(f"{t['speaker']}: {t['content']}" for t in row["meeting_transcripts"])
        for q, query in enumerate(row["specific_query_list"]):
            messages: list[Message] = [
                {"role": "system", "content": "You answer questions about meeting transcripts."},
                {"role": "user", "content": f"{transcript}\n\n{query['query']}"},
            ]
            examples.append(
                Example(
                    f"qmsum-{split}-{m}-{q}",
                    messages,
                    query["query"],
                    [query["answer"]],
                    "summary",
                    "long-document",
                )
            )
            if len(examples) >= n:
                return examples
    return examples


@register_dataset("sharegpt-chat", task="chat", kind="chat", metric="rougel", max_tokens=200)
def sharegpt_chat(n: int = 20) -> list[Example]:
    """Real multi-turn chats: the history up to the last user turn, the next assistant reply as reference."""
    examples = []
    for row in _rows("sharegpt/sharegpt_v3_first3000_multiturn.jsonl.gz", limit=n * 2):
        turns = [
            {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
            for t in row["conversations"]
            if t["from"] in ("human", "gpt")
        ]
        last_user = max((k for k, t in enumerate(turns) if t["role"] == "user"), default=-1)
        if last_user < 2:
            continue
        history = turns[: last_user + 1]
        reference = [turns[last_user + 1]["content"]] if last_user + 1 < len(turns) else []
        examples.append(
            Example(f"sharegpt-{row['id']}", history, history[-1]["content"], reference, "chat", "chat")
        )
        if len(examples) >= n:
            break
    return examples


@register_dataset("gsm8k-cot", task="math", kind="few-shot", metric="numeric_match", max_tokens=256)
def gsm8k_cot(n: int = 20) -> list[Example]:
    """GSM8K test questions after the 8-shot chain-of-thought prompt (``prompt_hardest.txt``), the setting of
    the prompt-compression papers: the demonstrations are compressed, the question is not."""
    demonstrations = (data_dir() / "gsm8k" / "prompt_hardest.txt").read_text(encoding="utf-8").strip()
    examples = []
    for i, row in enumerate(_rows("gsm8k/test.jsonl", limit=n)):
        question = f"Question: {row['question']}\nLet's think step by step"
        content = f"{demonstrations}\n\n{question}"
        answer = row["answer"].split("####")[-1].strip()
        examples.append(
            Example(
                f"gsm8k-{i}", [{"role": "user", "content": content}], question, [answer], "math", "few-shot"
            )
        )
    return examples


@register_dataset(
    "kv-retrieval", task="retrieval", kind="structured", metric="contains", max_tokens=48, retention=True
)
def kv_retrieval(n: int = 20, keys: int = 75) -> list[Example]:
    """Exact key-value lookup in a JSON object (Lost in the Middle): a structure-preservation test. The JSON
    is a protected block, so a correct strategy leaves it whole and cannot meet small budgets."""
    examples = []
    for i, row in enumerate(_rows(f"lost_in_the_middle/kv-retrieval-{keys}_keys.jsonl.gz", limit=n)):
        data = json.dumps(dict(row["ordered_kv_records"]), indent=1)
        question = f'Key: "{row["key"]}"\nCorresponding value:'
        content = (
            "Extract the value corresponding to the specified key in the JSON object below.\n\n"
            f"JSON data:\n{data}\n\n{question}"
        )
        examples.append(
            Example(
                f"kv-{i}",
                [{"role": "user", "content": content}],
                question,
                [row["value"]],
                "retrieval",
                "structured",
            )
        )
    return examples


@register_dataset("jsonl", task="qa", kind="rag", metric="contains", max_tokens=32, retention=True)
def jsonl(
    path: str,
    n: int | None = None,
    context_field: str = "context",
    question_field: str = "question",
    answers_field: str = "answers",
    task: str = "qa",
    kind: str = "rag",
) -> list[Example]:
    """Your own data: one JSON object per line with a context, a question and gold answers (a string or a
    list). In a suite: ``{ name = "jsonl", path = "my.jsonl", task = "qa" }``."""
    table = _read_json(path, n)
    return _examples(table, "jsonl", context_field, question_field, answers_field, task, kind)


@register_dataset("hub", task="qa", kind="rag", metric="contains", max_tokens=32, retention=True)
def hub(
    dataset: str,
    split: str = "validation",
    config: str | None = None,
    n: int | None = None,
    context_field: str = "context",
    question_field: str = "question",
    answers_field: str = "answers",
    task: str = "qa",
    kind: str = "rag",
) -> list[Example]:
    """A dataset from the Hugging Face hub, or from the local ``datasets`` cache when the user runs offline
    (``HF_DATASETS_OFFLINE=1``; nothing here sets it); fields are mapped as for ``jsonl``."""
    import datasets

    try:
        table = datasets.load_dataset(dataset, config, split=split if n is None else f"{split}[:{n}]")
    except Exception as exc:  # the library raises many kinds (connection, missing cache, bad split)
        raise DatasetError(f"cannot load {dataset!r} from the hub or the local cache: {exc}") from exc
    return _examples(table, dataset, context_field, question_field, answers_field, task, kind)


def _examples(
    table: Any,
    prefix: str,
    context_field: str,
    question_field: str,
    answers_field: str,
    task: str,
    kind: str,
) -> list[Example]:
    if kind not in KINDS:
        raise DatasetError(f"kind must be one of {KINDS}, got {kind!r}")
    examples = []
    for i, row in enumerate(table):
        answers = row[answers_field]
        answers = answers.get("text", []) if isinstance(answers, dict) else answers  # SQuAD-style answers
        question = str(row[question_field])
        content = f"{row[context_field]}\n\n{question}"
        gold = [answers] if isinstance(answers, str) else [str(a) for a in answers]
        examples.append(
            Example(f"{prefix}-{i}", [{"role": "user", "content": content}], question, gold, task, kind)
        )
    return examples


def repeated_sentence_rate(messages: list[Message], min_words: int = 6) -> float:
    """Share of a conversation's sentences (of ``min_words`` or more) that repeat an earlier one, normalised
    for case and punctuation: how much a deduplicating strategy can remove from it."""
    from .._messages import text_slots
    from .._text import split_sentences
    from ._metrics import normalize_answer

    seen: set[str] = set()
    total = repeated = 0
    for slot in text_slots(messages):
        for line in slot.text.splitlines():
            for start, end in split_sentences(line):
                sentence = normalize_answer(line[start:end])
                if len(sentence.split()) < min_words:
                    continue
                total += 1
                repeated += sentence in seen
                seen.add(sentence)
    return repeated / total if total else 0.0
