"""The Ray executor writes the rows a local run writes: compression as Ray tasks, the reader and the likelihood
model on Ray actors, on a local Ray instance of 2 CPUs that the tests start (skipped without the [ray] extra).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from occ_research.cli import main
from occ_research.evals import load_rows, summarize_run
from occ_research.evals._runner import load_suite, run_suite
from occ_research.exceptions import ModelUnavailableError, SuiteError
from occ_research.llm import LLM, ChatResponse, make_llm

#: what two runs of the same suite may differ in: how long things took
TIMING = ["compress_seconds"]
SUMMARY_TIMING = ["ms_per_request", "ms_per_1k_tokens"]

#: short contexts, so that the likelihood model scores them in seconds on 2 loaded cores
FACTS = [
    (
        "The Eiffel Tower was finished in 1889 for the World's Fair. It stands on the Champ de Mars in Paris. "
        "Gustave Eiffel's company designed and built it. Its height is 330 metres with antennas.",
        "Which company built the Eiffel Tower?",
        "Gustave Eiffel's company",
    ),
    (
        "Marie Curie was born in Warsaw in 1867. She won the Nobel Prize in Physics in 1903. "
        "She later won the Nobel Prize in Chemistry in 1911. She worked in Paris for most of her life.",
        "In which city was Marie Curie born?",
        "Warsaw",
    ),
    (
        "The Amazon river flows through Peru, Colombia and Brazil. It carries more water than any other "
        "river. Its basin covers about seven million square kilometres. It ends in the Atlantic Ocean.",
        "Which ocean does the Amazon flow into?",
        "the Atlantic Ocean",
    ),
]


class LookupReader(LLM):
    """A reader that needs no model: it answers with the prompt's sentence sharing most words with the
    question (so a compressed prompt that lost that sentence answers differently), and counts its calls.
    Picklable, so ``run_suite(reader=...)`` can send it to the Ray actors."""

    backend = "lookup"
    model = "lookup"

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        self.calls += 1
        text = " ".join(str(m.get("content", "")) for m in messages)
        *context, question = re.split(r"(?<=[.?!])\s+", text.strip())
        words = set(re.findall(r"\w{4,}", question.lower()))
        best = max(context, key=lambda s: len(words & set(re.findall(r"\w{4,}", s.lower()))), default="")
        return ChatResponse(text=best)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """A new local Ray instance with 2 CPUs (not the cluster RAY_ADDRESS may name); its workers run without
    the on-disk LLM call cache, so that nothing they return comes from the local run."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local", num_cpus=2, runtime_env={"env_vars": {"OCC_LLM_CACHE": "0"}}, log_to_driver=False
    )
    try:
        yield
    finally:
        ray.shutdown()


def _suite(folder: Path, body: str, n_likelihood: int = 2, n_read: int = 1) -> Path:
    data = folder / "facts.jsonl"
    data.write_text(
        "".join(json.dumps({"context": c, "question": q, "answers": [a]}) + "\n" for c, q, a in FACTS)
    )
    path = folder / "small.toml"
    path.write_text(
        f'name = "small"\nbudgets = [0.5, 0.25]\nworkers = 2\n{body}\n'
        f'[[datasets]]\nname = "jsonl"\npath = "{data}"\nn = 3\nn_likelihood = {n_likelihood}\nn_read = {n_read}\n'
    )
    return path


def _same_rows(local: Path, remote: Path) -> pd.DataFrame:
    rows = load_rows(local)
    pd.testing.assert_frame_equal(rows.drop(columns=TIMING), load_rows(remote).drop(columns=TIMING))
    pd.testing.assert_frame_equal(
        summarize_run(rows).drop(columns=SUMMARY_TIMING),
        summarize_run(load_rows(remote)).drop(columns=SUMMARY_TIMING),
    )
    return rows


@pytest.mark.usefixtures("ray_instance")
def test_ray_rows_match_a_local_run_with_the_local_likelihood_model(tmp_path: Path) -> None:
    # the embedded model scores the gold answer on 2 examples; the reader is a lookup (the embedded one
    # generates at seconds per answer on 2 loaded cores), sent to the actors as run_suite(reader=) allows
    suite = load_suite(_suite(tmp_path, 'strategies = ["bm25"]\nlikelihood = "local"', n_read=2))
    local, remote = LookupReader(), LookupReader()
    with pytest.warns(UserWarning, match="n_read = 2"):
        run_suite(suite, tmp_path / "local", executor="local", reader=local)
    with pytest.warns(UserWarning, match="n_read = 2"):
        run_suite(suite, tmp_path / "ray", executor="ray", reader=remote)
    rows = _same_rows(tmp_path / "local", tmp_path / "ray")
    assert len(rows) == 3 * (1 + 3 * 2)  # identity once, truncate, random and bm25 at two budgets
    assert rows["ll_compressed"].notna().sum() == 2 * 7 and (rows["ll_original"].dropna() < 0).all()
    assert rows["answer_compressed"].notna().sum() == 2 * 7 and rows["score_original"].dropna().any()
    assert not rows["agreement"].dropna().all()  # some compressed prompts lost the answer's sentence
    assert local.calls > 0 and remote.calls == 0  # the Ray run read on the actors' copies
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"] == "ray" and manifest["seed"] == 0
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["executor"] == "ray" and manifest["seed"] == 0


@pytest.mark.usefixtures("ray_instance")
def test_occ_eval_executor_ray_resumes_in_suite_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _suite(tmp_path, 'strategies = ["bm25", "dedup+bm25"]\nexecutor = "ray"', n_likelihood=0, n_read=0)
    assert load_suite(path).executor == "ray"
    run_suite(load_suite(path), tmp_path / "local", executor="local")
    out = tmp_path / "ray"
    assert main(["eval", str(path), "--executor", "ray", "--output", str(out), "--limit", "3"]) == 0
    assert "report.md" in capsys.readouterr().out
    lines = (out / "rows.jsonl").read_text().splitlines()
    (out / "rows.jsonl").write_text("\n".join(lines[:-4]) + "\n")  # as if stopped mid-example
    run_suite(load_suite(path), out)  # the suite's executor: ray
    _same_rows(tmp_path / "local", out)


def test_missing_ray_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    suite = load_suite(_suite(tmp_path, 'strategies = ["bm25"]', n_likelihood=0, n_read=0))
    with pytest.raises(ModelUnavailableError, match=r"occ-research\[ray\]"):
        run_suite(suite, tmp_path / "run", executor="ray")
    with pytest.raises(SuiteError, match="unknown executor 'dask'"):
        run_suite(suite, tmp_path / "run", executor="dask")
    bad = tmp_path / "bad.toml"
    bad.write_text('executor = "threads"\n')
    with pytest.raises(SuiteError, match="executor must be one of local, ray"):
        load_suite(bad)


def test_readers_travel_to_the_actors(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from occ_research.evals._ray_executor import reader_factory

    suite = load_suite(_suite(tmp_path, 'strategies = ["bm25"]'))
    cached = make_llm("local")  # its call cache holds a SQLite connection per thread: it does not pickle
    with pytest.raises(SuiteError, match="CachedLLM cannot be pickled"):
        reader_factory(suite, cached, cached, ray)
    made = reader_factory(suite, cached, None, ray)  # each actor makes the suite's reader itself
    assert made is not None and made().model == cached.model
    assert reader_factory(suite, None, None, ray) is None  # no reads, no reader
