"""Static sentence embeddings distilled from the shipped all-MiniLM-L6-v2: a vector per word piece, pooled.

The table is derived once per machine from the installed, hash-verified MiniLM (``_embeddings.py``): every
word piece of its vocabulary goes through the model alone (``[CLS] piece [SEP]``), and the piece's output
vector becomes its row; rows are centred (the common component carries no meaning) and weighted by the
piece's frequency rank (BERT's vocabulary lists word pieces roughly by frequency, so ``log(rank)`` plays the
part of an IDF, as in model2vec). A text's vector is then the sum of its pieces' rows, normalised: tens of
microseconds per sentence instead of a transformer pass.

Nothing is downloaded and no weights are committed: the table (float16, about 23 MB) is written under
``OCC_CACHE_DIR`` (else ``~/.cache/occ-research``) with a JSON record of its own sha256 and of the model and
tokenizer it came from; a table whose bytes or sources do not match is derived again (about 15 s on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._embeddings import MODEL_FILE, TOKENIZER_FILE, MiniLMEmbedder
from ._model_cache import ModelCache
from ._paths import cache_dir
from .exceptions import EmbeddingModelError

RECIPE = "minilm-l6-piece-output-centred-ziprank-v1"  # change it whenever the derivation changes
FIRST_WORD_PIECE = 1996  # ids below are padding, [unused], special tokens and single characters
MAX_PIECES = 512  # pieces read per text: bounds the work on a huge unit; a sentence is far shorter
_BATCH = 1024


def derive_table(model: MiniLMEmbedder) -> np.ndarray:
    """One row per vocabulary id: the model's output at the piece's position, centred, times log(rank)."""
    tokenizer, session = model._tokenizer, model._session  # the same package: its verified model files
    size = tokenizer.get_vocab_size()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    rows = np.zeros((size, 384), dtype=np.float32)
    for start in range(0, size, _BATCH):
        ids = np.arange(start, min(size, start + _BATCH), dtype=np.int64)
        framed = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        inputs = {"input_ids": framed, "attention_mask": np.ones_like(framed), "token_type_ids": 0 * framed}
        rows[start : start + len(ids)] = session.run(None, inputs)[0][:, 1]
    rows -= rows[FIRST_WORD_PIECE:].mean(axis=0)
    rank = np.maximum(np.arange(size) - FIRST_WORD_PIECE + 1, 1)
    weights = np.log1p(rank).astype(np.float32)
    return (rows * weights[:, None]).astype(np.float16)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sources() -> dict[str, str]:
    return {"recipe": RECIPE, "model_sha256": MODEL_FILE[2], "tokenizer_sha256": TOKENIZER_FILE[2]}


def load_or_derive_table(folder: Path | None = None) -> np.ndarray:
    """The cached table if its record matches its bytes and its sources, else a freshly derived one."""
    folder = folder or cache_dir()
    table_path = folder / "static-minilm.npy"
    record_path = folder / "static-minilm.json"
    if table_path.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("sources") == _sources() and record.get("sha256") == _sha256(table_path):
            table: np.ndarray = np.load(table_path, allow_pickle=False)
            return table
    table = derive_table(MiniLMEmbedder(cache_size=0))
    folder.mkdir(parents=True, exist_ok=True)
    partial = table_path.with_suffix(f".{os.getpid()}.tmp")
    with partial.open("wb") as handle:
        np.save(handle, table, allow_pickle=False)
    os.replace(partial, table_path)  # readers in other processes see the whole file or none
    record_path.write_text(json.dumps({"sha256": _sha256(table_path), "sources": _sources()}, indent=1))
    return table


class StaticEmbedder:
    """Texts -> unit vectors by summing table rows of their word pieces; remembers ``cache_size`` texts.

    ``embed_sums`` also gives the unnormalised sums, so that the vector of a run of texts (a passage made
    of sentences) is the sum of theirs, with no second pass over its pieces.
    """

    def __init__(self, table: np.ndarray | None = None, cache_size: int = 50_000) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingModelError('static embeddings need tokenizers: pip install -e ".[local]"') from exc
        from ._embeddings import _verified_file

        self._tokenizer = Tokenizer.from_file(str(_verified_file(*TOKENIZER_FILE)))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_PIECES)
        self._table = (load_or_derive_table() if table is None else table).astype(np.float32)
        self._vocab: dict[str, int] = self._tokenizer.get_vocab()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return int(self._table.shape[1])

    def embed_sums(self, texts: Sequence[str]) -> np.ndarray:
        """The summed rows of each text's word pieces (zeros for a text with none)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            # a lower-case ASCII word that is a whole piece of the vocabulary is that one piece: looked up
            # directly, it skips the tokenizer's per-call cost (microseconds, most of a short text's time)
            whole = {t: self._vocab[t] for t in missing if t in self._vocab and _plain_word(t)}
            for text, piece in whole.items():
                self._cache[text] = self._table[piece].copy()
            missing = [t for t in missing if t not in whole]
            if missing:
                encodings = self._tokenizer.encode_batch(missing, add_special_tokens=False)
                for text, encoding in zip(missing, encodings, strict=True):
                    ids = encoding.ids
                    self._cache[text] = (
                        self._table[ids].sum(axis=0) if ids else np.zeros(self.dimensions, np.float32)
                    )
            for text in texts:
                self._cache.move_to_end(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            if not texts:
                return np.zeros((0, self.dimensions), dtype=np.float32)
            return np.stack([self._cache[t] for t in texts])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return normalize_rows(self.embed_sums(texts))

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def _plain_word(text: str) -> bool:
    """Letters and digits only, ASCII, lower case: what the uncased tokenizer leaves as it is."""
    return text.isascii() and (text.isdigit() or (text.isalnum() and text.islower()))


def normalize_rows(vectors: Any) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return out


#: the loaded static embedders; ``STATIC_EMBEDDERS.clear()`` unloads them
STATIC_EMBEDDERS: ModelCache[str, StaticEmbedder] = ModelCache()


def default_static_embedder() -> StaticEmbedder:
    """One static MiniLM embedder per process (until ``STATIC_EMBEDDERS.clear()``)."""
    return STATIC_EMBEDDERS.get_or_build("static-minilm", StaticEmbedder)
