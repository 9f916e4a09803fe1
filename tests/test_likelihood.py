"""The likelihood scorer's context and threads, on the embedded model: what fits its context is scored whole,
what does not raises (and the runner skips it), and the thread counts asked for reach llama.cpp."""

from __future__ import annotations

import math

import llama_cpp
import pytest

from occ_research.evals import AnswerScorer
from occ_research.evals._runner import ModelJob, measure
from occ_research.exceptions import ContextLengthError
from occ_research.llm import LocalLLM
from occ_research.llm._local import _load

PROMPT = [{"role": "user", "content": "The capital of France is Paris. What is the capital of France?"}]
ANSWER = "Paris, the city of light"


def scorer(n_ctx: int) -> AnswerScorer:
    """One thread each: on a busy machine, llama.cpp's default of every core for batches is 30 times slower."""
    return AnswerScorer(n_ctx=n_ctx, threads=1, n_threads_batch=1)


@pytest.fixture(scope="module")
def roomy() -> AnswerScorer:
    return scorer(256)


@pytest.fixture(scope="module")
def needed(roomy: AnswerScorer) -> int:
    return roomy.tokens_needed(PROMPT, ANSWER)


def test_a_prompt_that_just_fits_is_scored_whole(roomy: AnswerScorer, needed: int) -> None:
    """At exactly ``n_ctx`` tokens the score is the one a roomy context gives (it used to drop the prompt's
    first tokens to keep a spare one)."""
    exact = scorer(needed)
    assert exact.fits(PROMPT, ANSWER)
    assert exact.loglikelihood(PROMPT, ANSWER) == pytest.approx(roomy.loglikelihood(PROMPT, ANSWER), abs=1e-6)


def test_a_prompt_one_token_too_long_raises(needed: int) -> None:
    """One token short of room: an error, not the likelihood after a truncated prompt."""
    short = scorer(needed - 1)
    assert not short.fits(PROMPT, ANSWER)
    with pytest.raises(ContextLengthError, match=f"needs {needed} context tokens"):
        short.loglikelihood(PROMPT, ANSWER)


def test_an_answer_longer_than_the_context_raises() -> None:
    """An answer alone longer than the context used to slice the prompt from a positive index and overflow
    llama.cpp's context."""
    small = scorer(32)
    answer = " ".join(["Paris"] * 40)
    assert not small.fits(PROMPT, answer)
    with pytest.raises(ContextLengthError):
        small.loglikelihood(PROMPT, answer)


def test_the_runner_skips_an_example_whose_original_does_not_fit(needed: int) -> None:
    """``measure`` leaves such an example unscored (None, as for examples past ``n_likelihood``) instead of
    failing the run; the same example is scored where it fits."""
    shorter = [{"role": "user", "content": "Paris. What is the capital of France?"}]
    job = ModelJob(PROMPT, "What is the capital of France?", ANSWER, 8, 0, False, True, (None, shorter))
    skipped = measure(job, None, scorer(needed - 1))
    assert (skipped.ll_original, skipped.ll_none, skipped.ll_compressed) == (None, None, (None, None))
    scored = measure(job, None, scorer(needed))
    assert scored.ll_original is not None and scored.ll_none is not None
    assert scored.ll_compressed[0] == scored.ll_original


def test_a_prompt_longer_than_the_readers_context_is_not_read() -> None:
    """A local reader refuses a prompt (and its answer's tokens) longer than its context with the typed
    ``ContextLengthError``, streamed or not; ``measure`` leaves that example unread instead of failing the
    run (a 20-document NQ prompt outgrew the reader's former 2,048 tokens and stopped an evaluation)."""
    small = LocalLLM(n_ctx=128)
    long = [{"role": "user", "content": "The capital of France is Paris. " * 30 + "What is it?"}]
    with pytest.raises(ContextLengthError, match="n_ctx = 128"):
        small.chat(long, max_tokens=8)
    with pytest.raises(ContextLengthError):
        list(small.completion_chunks(long, max_tokens=8))
    short = [{"role": "user", "content": "Paris. What is the capital of France?"}]
    job = ModelJob(long, "What is the capital of France?", ANSWER, 8, 0, True, False, (None, short))
    unread = measure(job, small, None)
    assert unread.answer_original is None and unread.answers == (None, None)
    read = measure(
        ModelJob(short, "What is the capital of France?", ANSWER, 8, 0, True, False, (None,)), small, None
    )
    assert read.answer_original  # the same reader answers a prompt that fits


def test_compressed_prompts_are_scored_where_the_context_helped(roomy: AnswerScorer) -> None:
    """Help retained reads only examples whose context raised the answer's likelihood, so the compressed
    prompts of the others are not scored, unless the reader answers them (the likelihood-versus-reader
    comparison reads those)."""
    question = "What is Zorblax's favourite colour?"
    helpful = [{"role": "user", "content": f"Zorblax's favourite colour is turquoise. {question}"}]
    useless = [{"role": "user", "content": f"My cat is called Whiskers and she is grey. {question}"}]
    cut = [{"role": "user", "content": f"Zorblax's favourite colour. {question}"}]

    def job(messages: list[dict[str, str]], read: bool) -> ModelJob:
        return ModelJob(messages, question, "turquoise", 4, 0, read, True, (None, cut))

    helped = measure(job(helpful, False), None, roomy)
    assert helped.ll_original is not None and helped.ll_none is not None
    assert helped.ll_original > helped.ll_none and None not in helped.ll_compressed
    unhelped = measure(job(useless, False), None, roomy)
    assert unhelped.ll_original is not None and unhelped.ll_none is not None
    assert unhelped.ll_original <= unhelped.ll_none
    assert unhelped.ll_compressed == (unhelped.ll_original, None)
    reader = LocalLLM()
    read = measure(job(useless, True), reader, roomy)
    assert read.ll_compressed[1] is not None and read.answers[1] is not None


def test_threads_reach_llama_cpp_and_default_to_local_llm_s() -> None:
    """The thread counts asked for are the scoring context's (they used to be ignored); left out, they are
    those of ``LocalLLM``'s model for one copy, and shared among copies."""
    asked = AnswerScorer(n_ctx=64, threads=3, n_threads_batch=5)
    used = asked._on_model(
        lambda llama: (llama_cpp.llama_n_threads(llama.ctx), llama_cpp.llama_n_threads_batch(llama.ctx))
    )
    assert used == (3, 5)
    default = AnswerScorer(n_ctx=64)
    local = _load(default.llm.path, default.llm.n_ctx, logits_all=False)[0]
    assert (default.threads, default.n_threads_batch) == (local.n_threads, local.n_threads_batch)
    shared = AnswerScorer(n_ctx=64, copies=2)
    assert shared.n_threads_batch == max(1, default.n_threads_batch // 2)


def test_the_answer_scored_in_one_batch_matches_token_by_token(roomy: AnswerScorer) -> None:
    """The answer's tokens go through the model in one batch that keeps every position's logits; that must
    give the sum a decode per token gives (up to the kernels' rounding: batched and single-token matrix
    products round differently)."""
    answer = "Paris is the capital and the largest city of France, on the Seine."

    def token_by_token(llama: object) -> float:
        prompt_ids, answer_ids = roomy._tokens(llama, PROMPT, answer)
        llama.n_tokens = 0  # type: ignore[attr-defined]
        total, feed = 0.0, prompt_ids
        for token in answer_ids:
            llama.eval(feed)  # type: ignore[attr-defined]
            row = llama_cpp.llama_get_logits_ith(llama.ctx, -1)  # type: ignore[attr-defined]
            logits = [row[i] for i in range(llama.n_vocab())]  # type: ignore[attr-defined]
            top = max(logits)
            total += logits[token] - top - math.log(sum(math.exp(x - top) for x in logits))
            feed = [token]
        return total

    batched = roomy.loglikelihood(PROMPT, answer)
    expected = roomy._on_model(token_by_token)
    assert len(roomy._on_model(lambda llama: roomy._tokens(llama, PROMPT, answer)[1])) > 10
    assert batched == pytest.approx(expected, rel=0.02, abs=0.05)
