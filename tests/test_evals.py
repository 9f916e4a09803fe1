"""The evaluation harness: metrics on hand-computed cases, loaders on the real files, a small end-to-end run
with the local reader, resumption and the winner rule."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from occ_research import ChatPolicy, DatasetError, SuiteError, compress, load_preset
from occ_research.evals import Row, load_examples, read_policy, select_winners, write_policy
from occ_research.evals._metrics import METRICS, bootstrap_ratio, last_number, rouge, token_f1
from occ_research.evals._report import pareto_front, summarize_run, upper_staircase, write_report
from occ_research.evals._runner import (
    DatasetEntry,
    StrategyEntry,
    compress_cell,
    load_rows,
    load_suite,
    run_suite,
)
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
    # the upper staircase: increasing savings, decreasing fidelity, dominated points left out
    points = [(0.0, 1.0), (0.5, 0.97), (0.5, 0.9), (0.75, 0.6), (0.75, 0.99), (0.4, 0.5)]
    assert upper_staircase(points) == [(0.0, 1.0), (0.75, 0.99)]
    assert upper_staircase([(0.0, 1.0), (0.5, 0.9), (0.75, 0.6)]) == [(0.0, 1.0), (0.5, 0.9), (0.75, 0.6)]


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
        '[[datasets]]\nname = "nq-multidoc"\nn = 4\nn_likelihood = 3\nn_read = 3\ndocuments = 3\n'
    )
    from occ_research.llm import make_llm

    reader = CountingReader(make_llm("local"))
    out = tmp_path_factory.mktemp("run")
    with pytest.warns(UserWarning, match="n_read = 3 can detect only"):
        run_suite(load_suite(suite_file), out, reader=reader)
    return suite_file, out


def test_end_to_end_run_with_the_local_reader(small_run: tuple[Path, Path]) -> None:
    _, out = small_run
    rows = load_rows(out)
    assert set(rows["strategy"]) == {"identity", "truncate", "random", "bm25"}
    assert len(rows) == 4 * (1 + 3)  # identity once per example, the others at one budget
    assert list(rows.columns) == Row.columns() and set(rows["kind"]) == {"rag"}
    assert (rows.loc[rows["strategy"] == "identity", "rate"] == 1.0).all()
    assert (rows.loc[rows["strategy"] != "identity", "rate"] <= 0.5).all()
    # the first 3 examples are read and scored, the fourth only compressed
    assert rows["score_compressed"].notna().sum() == 3 * 4 and rows["ll_compressed"].notna().sum() == 3 * 4
    identity = rows[rows["strategy"] == "identity"].dropna(subset=["ll_original"])
    assert (identity["ll_compressed"] == identity["ll_original"]).all()
    assert (rows["ll_original"].dropna() < 0).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reader"]["model"].endswith(".gguf") and manifest["versions"]["tiktoken"]
    report = write_report(out)
    text = report.read_text()
    assert "## nq-multidoc (rag)" in text and "truncate" in text and "random" in text and "SmolLM2" in text
    assert "not distinguishable from the original at n = 3" in text
    assert (out / "savings_vs_fidelity.png").stat().st_size > 1000
    assert (out / "paired_differences.png").stat().st_size > 1000
    summary = summarize_run(rows)
    bm25 = summary[summary["strategy"] == "bm25"].iloc[0]
    assert bm25["n"] == 4 and bm25["n_read"] == 3 and bm25["n_likelihood"] == 3


def test_interrupted_runs_resume(small_run: tuple[Path, Path]) -> None:
    suite_file, out = small_run
    rows = (out / "rows.jsonl").read_text().splitlines()
    (out / "rows.jsonl").write_text("\n".join(rows[:-2]) + "\n")  # as if stopped before the last two rows
    from occ_research.llm import make_llm

    reader = CountingReader(make_llm("local"))
    with pytest.warns(UserWarning, match="n_read = 3"):
        run_suite(load_suite(suite_file), out, reader=reader)
    assert len(load_rows(out)) == len(rows)
    assert reader.calls <= 3  # the unfinished example's original and compressed reads, nothing else
    # the run's record keeps its first session and adds this one, with the rows each wrote
    manifest = json.loads((out / "manifest.json").read_text())
    first, resumed = manifest["sessions"]
    assert (first["rows_before"], first["rows_after"]) == (0, len(rows))
    assert (resumed["rows_before"], resumed["rows_after"]) == (len(rows) - 2, len(rows))
    assert manifest["started"] == first["started"] and manifest["finished"] == resumed["finished"]
    assert manifest["seconds"] == pytest.approx(first["seconds"] + resumed["seconds"], abs=0.15)
    assert "in 2 sessions" in write_report(out).read_text()


def _synthetic_run(folder: Path, pairs: list[tuple[str, float, list[int]]], n: int = 200) -> Path:
    """A run folder with right/wrong reader scores per strategy x budget and likelihoods that keep the help."""
    folder.mkdir()
    rows = []
    for i in range(n):
        for strategy, budget, scores in pairs:
            rows.append(
                {
                    "dataset": "nq-multidoc",
                    "kind": "rag",
                    "task": "qa",
                    "example": str(i),
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
                    "score_compressed": scores[i % len(scores)],
                    "agreement": True,
                    "answer_original": "a",
                    "answer_compressed": "a",
                    "ll_original": -1.0,
                    "ll_compressed": -1.0 - (0.01 * (i % 3) if strategy != "identity" else 0),
                    "ll_none": -5.0,
                }
            )
    pd.DataFrame(rows).to_json(folder / "rows.jsonl", orient="records", lines=True)
    strategies = [
        {"strategy": "identity", "label": "identity"},
        {"strategy": "bm25", "label": "bm25"},
        {"strategy": "tfidf", "granularity": "sentence", "label": "tfidf"},
    ]
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "suite": "t",
                "seed": 0,
                "strategies": strategies,
                "reader": {"spec": "local", "model": "m"},
                "likelihood": {"model": "m"},
            }
        )
    )
    return folder


def test_winner_rule_uses_paired_statistics(tmp_path: Path) -> None:
    # bm25 at 0.25 loses 1 answer in 10 (McNemar p < 0.05 at n = 200): worse; tfidf at 0.25 loses none
    run = _synthetic_run(
        tmp_path / "run",
        [("identity", 1.0, [1]), ("bm25", 0.5, [1]), ("bm25", 0.25, [1] * 9 + [0]), ("tfidf", 0.25, [1])],
    )
    summary = summarize_run(load_rows(run))
    bm25 = summary[(summary.strategy == "bm25") & (summary.budget == 0.25)].iloc[0]
    assert bm25["difference"] == pytest.approx(-0.1) and bm25["mcnemar_p"] < 0.001
    assert bm25["verdict"].startswith("worse by 0.100")
    assert bm25["help_retained"] == pytest.approx(1 - 0.01 / 4, abs=0.01)
    winners = select_winners(run)
    assert winners["rag"] is not None and winners["rag"].label == "tfidf" and winners["rag"].rate == 0.25
    assert winners["rag"].reader_check == "non-inferior"  # n = 200 with no discordant pair detects 0.05
    path = write_policy(winners, tmp_path / "winner.toml", run)
    preset = load_preset(str(path))  # the top level is still a preset: the rag winner
    assert preset.rate == 0.25 and preset.strategy.config()["strategy"] == "tfidf"
    policy = read_policy(path)
    assert policy["rag"] == ({"strategy": "tfidf", "granularity": "sentence"}, 0.25)
    assert policy["chat"] is None and policy["few-shot"] is None
    assert select_winners(run, min_fidelity=1.01)["rag"] is None


def test_small_reader_samples_make_a_weak_check(tmp_path: Path) -> None:
    run = _synthetic_run(tmp_path / "run", [("identity", 1.0, [1]), ("bm25", 0.5, [1])], n=12)
    winner = select_winners(run)["rag"]
    assert winner is not None and winner.reader_check.startswith("weak: n = 12 detects >= 0.")
    assert read_policy(write_policy({"rag": None}, tmp_path / "w.toml", run))["rag"] is None


def test_a_strategy_entry_can_compress_the_way_the_server_does(tmp_path: Path) -> None:
    """``options`` on a suite entry reach the library; bad ones fail when the suite is read; the manifest
    records an entry so that it reads back the same."""
    served = '{ strategy = "bm25", label = "bm25-served", options = { chat = { keep_recent = 0 }, cache_stable = true, question = "found" } }'
    path = tmp_path / "suite.toml"
    path.write_text(f'budgets = [0.5]\nstrategies = ["bm25", {served}]\n', encoding="utf-8")
    suite = load_suite(path)
    plain, server = (
        next(s for s in suite.strategies if s.label == label) for label in ("bm25", "bm25-served")
    )
    example = load_examples("needle-chat", n=1)[0]
    args = (0.5, example.messages, example.question, "gpt-4o", 0)
    expected = compress(
        example.messages, "bm25", rate=0.5, chat=ChatPolicy(keep_recent=0), cache_stable=True, model="gpt-4o"
    )
    assert compress_cell(server, *args).messages == expected.messages
    assert compress_cell(plain, *args).messages != expected.messages
    assert StrategyEntry.parse(server.record()) == server
    for bad in (
        "{ cache = true }",
        '{ question = "latest" }',
        "{ chat = { keep_recnt = 0 } }",
        '{ cache_stable = "yes" }',
    ):
        path.write_text(
            f'strategies = [{{ strategy = "bm25", label = "b", options = {bad} }}]\n', encoding="utf-8"
        )
        with pytest.raises(SuiteError, match="options"):
            load_suite(path)


def test_dataset_entries_are_checked_when_the_suite_is_read(tmp_path: Path) -> None:
    """A typo in a ``[[datasets]]`` table (name, loader option, count, metric) is a ``SuiteError`` naming it,
    before any example is loaded; a good entry reads back the same from the manifest's record."""
    path = tmp_path / "suite.toml"
    good = 'name = "nq-multidoc"\nn = 3\ndocuments = 4\nn_read = 0\nmetric = "f1"'
    path.write_text(f'strategies = ["bm25"]\n[[datasets]]\n{good}\n', encoding="utf-8")
    entry = load_suite(path).datasets[0]
    assert (entry.name, entry.options, entry.n_read, entry.n_likelihood) == (
        "nq-multidoc",
        {"n": 3, "documents": 4},
        0,
        None,
    )
    assert entry.metric().name == "f1" and entry.kind == "rag"
    assert DatasetEntry.parse(entry.record()) == entry
    for bad, named in (
        ('name = "nq-multidok"', "did you mean 'nq-multidoc'"),
        ('name = "nq-multidoc"\ndocs = 5', "unknown option 'docs'"),
        ('name = "nq-multidoc"\nn_read = -1', "n_read must be a non-negative integer"),
        ('name = "nq-multidoc"\nn = "10"', "n must be a non-negative integer"),
        ('name = "nq-multidoc"\nmetric = "acc"', "unknown metric 'acc'"),
        ("n = 3", "a dataset entry is a table with a 'name'"),
    ):
        path.write_text(f'strategies = ["bm25"]\n[[datasets]]\n{bad}\n', encoding="utf-8")
        with pytest.raises(SuiteError, match=named):
            load_suite(path)
