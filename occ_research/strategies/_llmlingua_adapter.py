"""Microsoft's LLMLingua and LongLLMLingua (package ``llmlingua``), run side by side with ours on the same data.

Optional: ``pip install -e ".[peers]"``. The compressor's causal LM is loaded from disk with transformers
(the embedded SmolLM2 GGUF by default, or any local GGUF file or Hugging Face model directory); nothing is
downloaded. Two adjustments make llmlingua 0.2.2 run offline with current transformers, both kept here:
the compressor gets our verified cl100k encoding instead of asking tiktoken for it (tiktoken would download
it); and the model is wrapped so that llmlingua's tuple key-value caches are converted to and from
transformers' Cache objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._model_cache import ModelCache
from .._tokens import get_encoding
from ..exceptions import PeerUnavailableError
from ..llm._local import embedded_model_path
from ._base import Strategy
from ._params import GRANULARITIES, param
from ._rankers import Bm25Strategy
from ._registry import register_strategy
from ._selection import Candidates, Choice, Unit, coarse_cut

INSTALL = 'the llmlingua strategy needs the peers extra: pip install -e ".[peers]"'
LONGLLMLINGUA = {
    "rank_method": "longllmlingua",
    "condition_in_question": "after_condition",
    "reorder_context": "original",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
}


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

    def _choose(self, candidates: Candidates) -> Choice:
        if candidates.budget is None or sum(u.tokens for u in candidates.units) <= candidates.budget:
            return Choice({u.index: u.text for u in candidates.units})
        narrowed = coarse_cut(candidates, self.max_model_tokens, Bm25Strategy())
        if isinstance(narrowed, Choice):
            return narrowed
        compressor = COMPRESSORS.get_or_build(self.model_path, lambda: _load_compressor(self.model_path))
        # LongLLMLingua ranks by the question; without one, the original LLMLingua is what remains
        method = self.method if candidates.question else "llmlingua"
        options = LONGLLMLINGUA if method == "longllmlingua" else {}
        by_message: dict[int, list[Unit]] = {}
        for unit in narrowed.units:
            by_message.setdefault(unit.message, []).append(unit)
        total = sum(u.tokens for u in narrowed.units) or 1
        kept: dict[int, str] = {}
        for units in by_message.values():
            share = max(1, candidates.budget * sum(u.tokens for u in units) // total)
            result = compressor.compress_prompt(
                [u.text for u in units],
                question=candidates.question,
                target_token=share,
                concate_question=False,
                **options,
            )
            text = str(result["compressed_prompt"]).strip()
            if text:
                kept[units[0].index] = text
        return Choice(kept, note=f"{method} (llmlingua 0.2.2) with {Path(self.model_path).name or 'SmolLM2'}")


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


#: llmlingua PromptCompressors by model path ("" for the embedded model); ``COMPRESSORS.clear()`` unloads them
COMPRESSORS: ModelCache[str, Any] = ModelCache()


def _load_compressor(model_path: str) -> Any:
    """A PromptCompressor for the model (loading takes about 20 s: ``COMPRESSORS`` keeps it)."""
    try:
        import torch
        from llmlingua import PromptCompressor
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise PeerUnavailableError(f"{INSTALL} ({exc})") from exc
    path = Path(model_path) if model_path else embedded_model_path()
    gguf = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    directory = str(path.parent if gguf else path)

    class LocalPromptCompressor(PromptCompressor):  # type: ignore[misc]
        def __init__(self, model_name: str) -> None:
            # What PromptCompressor.__init__ (0.2.2) sets, with our verified cl100k where it would call
            # tiktoken.encoding_for_model("gpt-3.5-turbo"), which downloads the rank file by URL. Overriding
            # __init__ leaves tiktoken's process-wide registry and the environment alone.
            self.model_name = model_name
            self.use_llmlingua2 = False
            self.retrieval_model = None
            self.retrieval_model_name = None
            self.open_api_config: dict[str, Any] = {}
            self.cache_bos_num = 10
            self.prefix_bos_num = 100
            self.oai_tokenizer = get_encoding("cl100k_base")
            self.load_model(model_name)

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

    return LocalPromptCompressor(directory)
