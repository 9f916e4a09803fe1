"""The evaluation harness: metrics on hand-computed cases, loaders on the real files, a small end-to-end run
with the local reader, resumption and the winner rule."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from occ_research import DatasetError, load_preset
from occ_research.evals import load_examples
from occ_research.evals._metrics import METRICS, bootstrap_ratio, last_number, rouge, token_f1
from occ_research.evals._report import pareto_front, summarize_run, write_report
from occ_research.evals._runner import load_rows, load_suite, run_suite
from occ_research.evals._select import select_winner, write_winner
from occ_research.llm import LLM


def test_metrics_on_hand_computed_cases() -> None:
    assert METRICS.get("exact_match").score("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    # prediction "paris france", gold "paris": precision 1/2, recall 1 -> F1 2/3
    assert token_f1("Paris France", ["Paris"]) == pytest.approx(2 / 3)
    assert METRICS.get("contains").score("It is in Paris, France.", ["paris"]) == 1.0
    assert last_number("so 3 + 4 = 7. The answer is 1,250.") == 1250.0
    assert last_number("#### 42") == 42.0
    assert METRICS.get("numeric_match").score("... The answer is 18", ["#### 18"]) == 1.0
    # "the cat sat" vs "the cat ran" after normalisation: "cat sat" / "cat ran" -> ROUGE-1 F 0.5, ROUGE-2 0
    assert rouge("the cat sat", "the cat ran", "1") == pytest.approx(0.5)
    assert rouge("the cat sat", "the cat ran", "2") == 0.0
    # LCS of "w x y z" and "w y z v" is 3: P = R = 3/4
    assert rouge("w x y z", "w y z v", "L") == pytest.approx(0.75)
    assert all(METRICS.get(name).higher_is_better for name in ["contains", "f1", "rougel"])


def test_bootstrap_fidelity() -> None:
    fidelity, low, high = bootstrap_ratio([1, 1, 0, 1], [1, 1, 1, 1])
    assert fidelity == 0.75 and low <= 0.75 <= high
    assert bootstrap_ratio([1, 1], [1, 1]) == (1.0, 1.0, 1.0)


def test_pareto_front() -> None:
    assert pareto_front([(0.5, 0.9), (0.7, 0.8), (0.4, 0.85), (0.7, 0.95)]) == [3]
    assert sorted(pareto_front([(0.5, 0.9), (0.7, 0.8)])) == [0, 1]


def test_sharegpt_redundancy_statistics(chat_examples: list) -> None:
    from occ_research.evals._datasets import repeated_sentence_rate

    assert (
        repeated_sentence_rate(
            [{"role": "user", "content": "One two three four five six. One two three four five six!"}]
        )
        == 0.5
    )
    rates = [repeated_sentence_rate(e.messages) for e in chat_examples]
    assert all(0 <= r < 1 for r in rates) and any(r > 0 for r in rates)


def test_more_loaders_on_the_real_files(tmp_path: Path) -> None:
    gsm = load_examples("gsm8k-cot", n=2)
    assert gsm[0].answers == ["18"] and gsm[0].messages[0]["content"].endswith(gsm[0].question)
    kv = load_examples("kv-retrieval", n=2)
    content = kv[0].messages[0]["content"]
    assert kv[0].answers[0] in content and json.loads(content.split("JSON data:\n")[1].split("\n\nKey:")[0])
    own = tmp_path / "mine.jsonl"
    own.write_text(
        json.dumps({"context": "Ada wrote the first program.", "question": "Who?", "answers": "Ada"}) + "\n"
    )
    mine = load_examples("jsonl", path=str(own))
    assert mine[0].answers == ["Ada"] and mine[0].messages[0]["content"].endswith("Who?")


def test_hub_datasets_fail_clearly_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub

    # the libraries read these variables when imported (maybe earlier in this run), so set both ways
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match="cannot load 'no-such-org/no-such-set'"):
        load_examples("hub", dataset="no-such-org/no-such-set", n=2)


class CountingReader(LLM):
    """Wraps the real local reader and counts calls (to check resumption re-reads nothing)."""

    backend = "counting"

    def __init__(self, inner: LLM) -> None:
        self.inner, self.model, self.calls = inner, inner.model, 0

    def chat(self, messages, **params):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.chat(messages, **params)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    suite_file = tmp_path_factory.mktemp("suite") / "tiny.toml"
    suite_file.write_text(
        'name = "tiny"\nbudgets = [0.5]\nworkers = 1\nstrategies = ["bm25"]\n'
        '[[datasets]]\nname = "nq-multidoc"\nn = 3\ndocuments = 3\n'
    )
    from occ_research.llm import make_llm

    reader = CountingReader(make_llm("local"))
    out = tmp_path_factory.mktemp("run")
    run_suite(load_suite(suite_file), out, reader=reader)
    return suite_file, out


def test_end_to_end_run_with_the_local_reader(small_run: tuple[Path, Path]) -> None:
    _, out = small_run
    rows = load_rows(out)
    assert set(rows["strategy"]) == {"identity", "truncate", "random", "bm25"}
    assert len(rows) == 3 * (1 + 3)  # identity once per example, the others at one budget
    assert (rows.loc[rows["strategy"] == "identity", "rate"] == 1.0).all()
    assert (rows.loc[rows["strategy"] != "identity", "rate"] <= 0.5).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reader"]["model"].endswith(".gguf") and manifest["versions"]["tiktoken"]
    report = write_report(out)
    text = report.read_text()
    assert "## nq-multidoc" in text and "truncate" in text and "random" in text and "SmolLM2" in text
    assert (out / "savings_vs_fidelity.png").stat().st_size > 1000


def test_interrupted_runs_resume(small_run: tuple[Path, Path]) -> None:
    suite_file, out = small_run
    rows = (out / "rows.jsonl").read_text().splitlines()
    (out / "rows.jsonl").write_text("\n".join(rows[:-2]) + "\n")  # as if stopped before the last two rows
    from occ_research.llm import make_llm

    reader = CountingReader(make_llm("local"))
    run_suite(load_suite(suite_file), out, reader=reader)
    assert len(load_rows(out)) == len(rows)
    assert reader.calls <= 3  # the unfinished example's original and compressed reads, nothing else


def test_winner_rule_and_preset(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for i in range(20):
        for strategy, budget, score in [
            ("identity", 1.0, 1),
            ("bm25", 0.5, 1),
            ("bm25", 0.25, i % 2),
            ("tfidf", 0.25, 1),
        ]:
            rows.append(
                {
                    "dataset": "d",
                    "example": str(i),
                    "task": "qa",
                    "strategy": strategy,
                    "budget": budget,
                    "original_tokens": 100,
                    "compressed_tokens": int(100 * budget) - (1 if strategy == "tfidf" else 0),
                    "rate": budget,
                    "saved_tokens": 0,
                    "budget_met": True,
                    "compress_seconds": 0.001,
                    "answer_kept": True,
                    "metric": "contains",
                    "score_original": 1,
                    "score_compressed": score,
                    "agreement": True,
                    "answer_original": "a",
                    "answer_compressed": "a",
                }
            )
    pd.DataFrame(rows).to_json(run / "rows.jsonl", orient="records", lines=True)
    strategies = [
        {"strategy": "identity", "label": "identity"},
        {"strategy": "bm25", "label": "bm25"},
        {"strategy": "tfidf", "granularity": "sentence", "label": "tfidf"},
    ]
    (run / "manifest.json").write_text(
        json.dumps({"suite": "t", "seed": 0, "strategies": strategies, "reader": {"spec": "local"}})
    )
    summary = summarize_run(load_rows(run))
    assert summary.loc[(summary.strategy == "bm25") & (summary.budget == 0.25), "fidelity"].item() == 0.5
    winner = select_winner(run, 0.95)
    assert (
        winner is not None and winner["label"] == "tfidf" and winner["rate"] == 0.25
    )  # bm25@0.25 fails the rule
    path = write_winner(winner, tmp_path / "winner.toml")
    preset = load_preset(str(path))
    assert preset.rate == 0.25 and preset.strategy.config()["strategy"] == "tfidf"
    assert select_winner(run, 1.01) is None
