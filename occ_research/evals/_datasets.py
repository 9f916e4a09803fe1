"""Real datasets, loaded offline with the ``datasets`` library and mapped to one record shape.

Files are read from the shared data folder: ``OCC_DATA_DIR`` if set, else ``../shared/data`` next to the
working directory or next to the source checkout.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._kinds import KINDS
from .._messages import Message
from .._paths import data_dir
from .._registry import Registry
from ..exceptions import DatasetError
from ._metrics import contains_answer

Loader = Callable[..., list["Example"]]


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
    gold_position: int | None = None  # 0-based document holding the gold passage (multi-document QA)
    #: the text whose likelihood the fidelity signal scores, when it is not the first gold answer: for a
    #: chain-of-thought prompt the reference reasoning, since the final number alone, teacher-forced right
    #: after the question, says nothing about the reasoning the demonstrations are there to prime
    scored_text: str | None = None

    @property
    def likelihood_target(self) -> str:
        return self.scored_text if self.scored_text is not None else (self.answers[0] if self.answers else "")


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


NQ_ORACLE = "lost_in_the_middle/nq-open-oracle.jsonl.gz"
#: how ``nq-multidoc`` picks the passages around the gold one
DISTRACTORS = ("random", "retrieved")


def _passage_text(passage: Mapping[str, Any]) -> str:
    """What a reader sees of a passage besides its number: the retriever indexes it, the answer check reads it."""
    return f"{passage['title']} {passage['text']}"


@dataclass(frozen=True)
class PassageIndex:
    """A lexical (BM25) index over a pool of titled passages: the retriever of ``nq-multidoc``'s retrieved
    distractors, as HotpotQA's distractor setting uses bigram TF-IDF over Wikipedia.

    ``bm25s`` (numpy only, no model) tokenises with its English stop words and no stemmer; indexing the 2,655
    NQ passages takes about 0.2 s and scoring every passage for a question well under a millisecond.
    """

    passages: tuple[Mapping[str, Any], ...]
    bm25: Any  # bm25s.BM25 (the library ships no type information)

    @classmethod
    def build(cls, passages: Sequence[Mapping[str, Any]]) -> PassageIndex:
        import bm25s  # type: ignore[import-untyped,unused-ignore]

        tokens = bm25s.tokenize([_passage_text(p) for p in passages], stopwords="en", show_progress=False)
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        return cls(tuple(passages), bm25)

    def ranked(self, query: str) -> list[int]:
        """Every passage's index, the most similar to ``query`` first; ties keep pool order, so a ranking never
        depends on anything but the pool and the query."""
        import bm25s

        words = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [w for w in words if w in self.bm25.vocab_dict]
        scores = self.bm25.get_scores(known) if known else np.zeros(len(self.passages))
        return [int(j) for j in np.argsort(-np.asarray(scores), kind="stable")]

    def distractors(
        self, question: str, answers: Sequence[str], gold: Mapping[str, Any], k: int
    ) -> list[Mapping[str, Any]]:
        """The ``k`` passages most similar to ``question`` that hold no answer (normalised as the ``contains``
        metric does, title included) and repeat neither the gold passage nor each other, most similar first."""
        chosen: list[Mapping[str, Any]] = []
        seen = {gold["text"]}
        for j in self.ranked(question):
            passage = self.passages[j]
            if passage["text"] in seen or contains_answer(_passage_text(passage), answers):
                continue
            seen.add(passage["text"])
            chosen.append(passage)
            if len(chosen) == k:
                return chosen
        raise DatasetError(
            f"the pool holds only {len(chosen)} answer-free passages for {question!r}, not {k}"
        )


@functools.lru_cache(maxsize=2)
def nq_index(path: str) -> PassageIndex:
    """The BM25 index of the NQ oracle pool at ``path`` (every question's gold passage), built once per
    process: every load of retrieved ``nq-multidoc`` examples reuses it."""
    return PassageIndex.build([dict(row)["ctxs"][0] for row in _read_json(path)])


def _positions(gold_position: int | Sequence[int] | None, documents: int) -> list[int] | None:
    if gold_position is None:
        return None
    positions = [gold_position] if isinstance(gold_position, int) else [int(p) for p in gold_position]
    if not positions or any(p < 0 for p in positions):
        raise DatasetError(f"gold_position must be positions >= 0 (0-based), got {gold_position!r}")
    return [min(p, documents - 1) for p in positions]


@register_dataset("nq-multidoc", task="qa", kind="rag", metric="contains", max_tokens=32, retention=True)
def nq_multidoc(
    n: int = 50,
    documents: int = 10,
    gold_position: int | Sequence[int] | None = None,
    seed: int = 0,
    distractors: str = "random",
    every_position: bool = False,
) -> list[Example]:
    """NQ-open questions, each with its gold passage among ``documents - 1`` distractors (10 or 20 documents
    give the Lost-in-the-Middle settings).

    ``distractors``: other questions' gold passages, drawn at random (``"random"``, the default, as before)
    or retrieved (``"retrieved"``): the passages of that pool most similar to the question by BM25 over title
    and text that contain no gold answer, most similar first, the way HotpotQA builds its distractor setting
    (the published Lost-in-the-Middle set used Contriever, which is not available offline). Retrieved
    distractors are harder, for readers and above all for compressors: they share the question's words, so a
    lexical pruner ranks their sentences as high as the gold one and must cut among look-alikes, where random
    distractors are off-topic and fall away first.

    ``gold_position`` (0-based, clamped to the last document) fixes where the gold passage stands; a list of
    positions cycles over the examples (``[0, 9, 19]``: a third at each); None draws it at random. Both kinds
    of distractors draw the same random numbers, so for a seed they hold the same questions with the gold
    passage at the same positions: only the distractors differ. Each example records its gold position.

    ``every_position``: each of the ``n`` questions at every position of ``gold_position`` (every document
    when None), the same distractors in the same order, ids ``nq-<question>-at<position>``: the paired design
    of the lost-in-the-middle curve, where cycling positions compares different questions at each.
    """
    if distractors not in DISTRACTORS:
        raise DatasetError(f"distractors must be one of {DISTRACTORS}, got {distractors!r}")
    if documents < 1:
        raise DatasetError(f"documents must be at least 1, got {documents}")
    positions = _positions(gold_position, documents)
    if every_position and positions is None:
        positions = list(range(documents))
    rows = _rows(NQ_ORACLE)
    index = nq_index(str(data_dir() / NQ_ORACLE)) if distractors == "retrieved" else None
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), min(n, len(rows)))
    examples = []
    for k, i in enumerate(picked):
        row = rows[i]
        # drawn in both modes, so that random and retrieved examples of a seed share questions and positions
        drawn = rng.sample([j for j in range(len(rows)) if j != i], documents - 1)
        others: list[Mapping[str, Any]] = (
            [rows[j]["ctxs"][0] for j in drawn]
            if index is None
            else index.distractors(row["question"], row["answers"], row["ctxs"][0], documents - 1)
        )
        if every_position and positions is not None:
            examples += [_nq_example(f"nq-{i}-at{p}", row, others, p) for p in dict.fromkeys(positions)]
        else:
            position = rng.randrange(documents) if positions is None else positions[k % len(positions)]
            examples.append(_nq_example(f"nq-{i}", row, others, position))
    return examples


def _nq_example(
    name: str, row: Mapping[str, Any], others: Sequence[Mapping[str, Any]], position: int
) -> Example:
    """The Lost-in-the-Middle prompt: the instruction, numbered titled documents (the gold one at
    ``position``), the question."""
    passages = [*others[:position], row["ctxs"][0], *others[position:]]
    body = "\n\n".join(
        f"Document [{m}](Title: {p['title']}) {p['text']}" for m, p in enumerate(passages, start=1)
    )
    question = f"Question: {row['question']}\nAnswer:"
    content = f"{NQ_INSTRUCTION}\n\n{body}\n\n{question}"
    return Example(
        name, [{"role": "user", "content": content}], question, list(row["answers"]), gold_position=position
    )


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
        reasoning, _, answer = row["answer"].rpartition("####")
        answer = answer.strip()
        # the reference reasoning in the demonstrations' own form: calculator notes out, "The answer is N" last
        steps = _CALCULATOR_NOTE.sub("", reasoning).strip()
        examples.append(
            Example(
                f"gsm8k-{i}",
                [{"role": "user", "content": content}],
                question,
                [answer],
                "math",
                "few-shot",
                scored_text=f"{steps}\nThe answer is {answer}",
            )
        )
    return examples


_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


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
