"""The likelihood fidelity signal: how likely a local model finds the gold answer after a prompt.

``LL(answer | messages)`` is the sum of the log-probabilities of the answer's tokens, teacher-forced after
the messages rendered by the model's chat template with the assistant turn opened: one forward pass over the
prompt, then one over the answer with the logits of every position kept, no generation. From three of them
per example,

    help retained = (LL(a | compressed) - LL(a | question only)) / (LL(a | original) - LL(a | question only))

is 1 when compression keeps all the help the context gave the model, 0 when it keeps none. A small model
whose generated answers are mostly wrong still ranks the gold answer higher when the passage holding it is
in its prompt, so this signal works with the embedded SmolLM2-135M, where reader accuracy does not.

The model is llama.cpp's, loaded here with its own context (no logits for every position, which
``LocalLLM.token_logprobs`` keeps and which costs 200 MB per 1,000 tokens at this vocabulary).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from .._model_cache import ModelCache
from ..exceptions import ContextLengthError
from ..llm import LocalLLM

T = TypeVar("T")


def _close(entry: tuple[Any, threading.Lock]) -> None:
    entry[0].close()


#: scoring models by (file, context size, threads, batch threads, copy), each with the lock that serialises
#: its calls
SCORING_MODELS: ModelCache[tuple[Path, int, int, int, int], tuple[Any, threading.Lock]] = ModelCache(
    close=_close
)


class AnswerScorer:
    """Teacher-forced log-likelihood of an answer after chat messages (see the module docstring).

    ``model_path`` None is the embedded model. A prompt and answer that need more than ``n_ctx`` tokens
    (``tokens_needed``) are not scored: ``loglikelihood`` raises ``ContextLengthError``, because a likelihood
    after a truncated prompt is a number about another prompt; callers check ``fits`` and skip them.
    Results are memoised by (messages, answer): compressed prompts that come out identical (a pipeline
    whose first step removes nothing) are scored once. A prompt that starts like the one scored before on
    the same model copy (the ``truncate`` baseline after its original) reuses its cache.

    ``copies`` models score concurrently (the model is 100 MB). ``threads`` feed the answer (one token per
    step) and ``n_threads_batch`` the prompt (most of the work); by default llama.cpp's own defaults, which
    ``LocalLLM`` uses (half the cores, and all of them), shared among the copies: copies that each take
    every core oversubscribe them (on two loaded cores, two copies of two batch threads took twice as long
    as two copies of one).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        n_threads_batch: int | None = None,
        copies: int = 1,
    ) -> None:
        self.llm = LocalLLM(model_path)  # finds and checks the file
        self.model = self.llm.model
        self.n_ctx = n_ctx
        copies = max(1, copies)
        cores = os.cpu_count() or 1
        self.threads = threads if threads is not None else max(1, cores // 2 // copies)
        self.n_threads_batch = n_threads_batch if n_threads_batch is not None else max(1, cores // copies)
        self._free: queue.Queue[int] = queue.Queue()
        for copy in range(copies):
            self._free.put(copy)
        self._memo: dict[tuple[str, str], float] = {}
        self._memo_lock = threading.Lock()

    def loglikelihood(self, messages: Sequence[Mapping[str, Any]], answer: str) -> float:
        """``LL(answer | messages)``; raises ``ContextLengthError`` when they do not fit (see ``fits``)."""
        key = (repr([(m.get("role"), m.get("content")) for m in messages]), answer)
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        value = self._on_model(lambda llama: self._score_on(llama, messages, answer))
        with self._memo_lock:
            self._memo[key] = value
        return value

    def tokens_needed(self, messages: Sequence[Mapping[str, Any]], answer: str) -> int:
        """Context tokens that scoring ``answer`` after ``messages`` takes: the rendered prompt, and every
        answer token but the last (which is only predicted, never fed)."""
        return self._on_model(lambda llama: _needed(*self._tokens(llama, messages, answer)))

    def fits(self, messages: Sequence[Mapping[str, Any]], answer: str) -> bool:
        """Whether ``loglikelihood(messages, answer)`` can be computed within ``n_ctx`` tokens. The runner
        checks an example's original prompt and scores none of its prompts when it does not fit (compressed
        prompts are shorter, and the question alone is part of it)."""
        return self.tokens_needed(messages, answer) <= self.n_ctx

    def _on_model(self, work: Callable[[Any], T]) -> T:
        """``work(llama)`` on a free copy of the model, holding its lock."""
        copy = self._free.get()
        try:
            key = (self.llm.path, self.n_ctx, self.threads, self.n_threads_batch, copy)
            llama, lock = SCORING_MODELS.get_or_build(key, self._build)
            with lock:
                return work(llama)
        finally:
            self._free.put(copy)

    def _tokens(
        self, llama: Any, messages: Sequence[Mapping[str, Any]], answer: str
    ) -> tuple[list[int], list[int]]:
        """The prompt's tokens (chat template, assistant turn opened) and the answer's."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=llama.detokenize([llama.token_eos()]).decode("utf-8", "replace"),
            bos_token=llama.detokenize([llama.token_bos()]).decode("utf-8", "replace"),
            add_generation_prompt=True,
        )
        prompt = formatter(messages=cast(Any, list(messages))).prompt
        prompt_ids = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        answer_ids = llama.tokenize(answer.strip().encode("utf-8"), add_bos=False, special=False)
        return list(prompt_ids), list(answer_ids)

    def _score_on(self, llama: Any, messages: Sequence[Mapping[str, Any]], answer: str) -> float:
        prompt_ids, answer_ids = self._tokens(llama, messages, answer)
        needed = _needed(prompt_ids, answer_ids)
        if needed > self.n_ctx:
            raise ContextLengthError(
                f"a {len(answer_ids)}-token answer after a {len(prompt_ids)}-token prompt needs {needed} "
                f"context tokens, more than n_ctx = {self.n_ctx}: check fits() first, or use a larger n_ctx"
            )
        if not answer_ids:
            return 0.0
        # keep the cached prefix shared with the previous call; at least one token is fed for its logits
        common = 0
        for before, now in zip(llama.input_ids[: llama.n_tokens], prompt_ids[:-1], strict=False):
            if before != now:
                break
            common += 1
        llama.n_tokens = common
        llama.eval(prompt_ids[common:])  # drops the cache past n_tokens first; logits of the last token only
        total = _log_probability(_logits(llama, -1), answer_ids[0])
        # the answer's other tokens in batches that keep every position's logits (one pass, not one per token)
        rest, position = answer_ids[:-1], llama.n_tokens
        for start in range(0, len(rest), llama.n_batch):  # llama.cpp's own batch: its size is n_batch
            chunk = rest[start : start + llama.n_batch]
            llama._batch.set_batch(chunk, n_past=position, logits_all=True)
            llama._ctx.decode(llama._batch)
            for k in range(len(chunk)):
                total += _log_probability(_logits(llama, k), answer_ids[start + k + 1])
            position += len(chunk)
        return total

    def _build(self) -> tuple[Any, threading.Lock]:
        from llama_cpp import Llama

        llama = Llama(
            model_path=str(self.llm.path),
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.n_threads_batch,
            logits_all=False,
            verbose=False,
            seed=0,
        )
        return llama, threading.Lock()


def _logits(llama: Any, index: int) -> np.ndarray:
    """The logits the last decode kept at batch position ``index`` (-1: its last token)."""
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llama.ctx, index)
    return np.ctypeslib.as_array(row, shape=(llama.n_vocab(),)).astype(np.float64)


def _log_probability(logits: np.ndarray, token: int) -> float:
    top = logits.max()
    return float(logits[token] - top - np.log(np.exp(logits - top).sum()))


def _needed(prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> int:
    return len(prompt_ids) + max(0, len(answer_ids) - 1)


def help_retained(compressed: float, original: float, none: float) -> float | None:
    """One example's share of the context's help kept; None when the context did not help (original <= none)."""
    helped = original - none
    return (compressed - none) / helped if helped > 0 else None
