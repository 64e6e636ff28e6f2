"""A model's size and shape without loading it: what ``advisor estimate`` prices.

In order of trust:

1. a local model folder: its ``config.json``, counted analytically for Llama-like
   decoders (embeddings, attention with grouped KV heads, gated MLP, norms; tied or not),
   else counted exactly on PyTorch's meta device (transformers, imported lazily);
2. a hub id in :data:`KNOWN` (the configs of common small models, written down here:
   nothing is downloaded);
3. a size in the name (``...-7B-...``, ``...-135M``), with a typical shape for that size.

Example::

    shape = model_shape("Qwen/Qwen2.5-1.5B-Instruct", Path("."))
    shape.parameters, shape.source   # (1543714304, 'known config')
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import InputError


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    source: str  # config.json, known config, name
    #: Measured with the model's own tokenizer on the plan's prompts, when the folder has one
    #: (None: the estimate's rule of thumb); see :func:`advisor.estimate.measure_tokens`.
    chars_per_token: float | None = None
    chat_tokens: int | None = None

    @property
    def head_dim(self) -> int:
        return max(1, self.hidden // max(1, self.heads))

    def kv_bytes(self, batch: int, length: int, dtype_bytes: int) -> int:
        """The KV cache of ``batch`` sequences of ``length`` tokens."""
        return 2 * self.layers * self.kv_heads * self.head_dim * length * batch * dtype_bytes

    def lora_parameters(self, r: int = 16) -> int:
        """A rank-``r`` adapter on every linear layer (q, k, v, o, gate, up, down)."""
        h, kv, i = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        per_layer = (h + h) * 2 + (h + kv) * 2 + (h + i) * 2 + (i + h)
        return r * per_layer * self.layers

    def activation_bytes(self, batch: int, length: int, dtype_bytes: int, checkpointing: bool) -> int:
        """Activations kept for the backward pass (Korthikanti et al. 2022, per layer
        ``s·b·h·(34 + 5·a·s/h)`` bytes at 16 bits), plus the logits and their gradient.
        With activation checkpointing only each layer's input is kept, plus one layer's full set."""
        tokens = batch * length
        per_layer = tokens * self.hidden * (34 + 5 * self.heads * length / max(1, self.hidden)) * dtype_bytes / 2
        kept = (2 * tokens * self.hidden * self.layers + per_layer) if checkpointing else per_layer * self.layers
        logits = tokens * self.vocab * 4 * 3  # fp32 logits, softmax and their gradient
        return int(kept + logits)


def _llama_shape(config: dict[str, Any], source: str) -> ModelShape | None:
    """Shape and an exact parameter count for a Llama-like decoder config (None if it is not one)."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    if not all(isinstance(text.get(k), int) for k in keys):
        return None
    h, layers, heads = text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"]
    kv = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or h // heads
    i, vocab = text["intermediate_size"], text["vocab_size"]
    bias = bool(text.get("attention_bias", False)) or text.get("model_type") == "qwen2"
    attention = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h
    if bias:
        attention += heads * head_dim + 2 * kv * head_dim
    per_layer = attention + 3 * h * i + 2 * h
    tied = config.get("tie_word_embeddings", text.get("tie_word_embeddings", True))
    total = layers * per_layer + vocab * h * (1 if tied else 2) + h
    return ModelShape(total, h, layers, heads, kv, i, vocab, source)


#: Configs of common small models (from their config.json), so hub ids are priced offline.
KNOWN: dict[str, dict[str, Any]] = {
    "qwen/qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                              num_key_value_heads=2, intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
    "qwen/qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True),
    "qwen/qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
                            num_key_value_heads=2, intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True),
    "qwen/qwen2.5-7b": dict(model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                            num_key_value_heads=4, intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False),
    "huggingfacetb/smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                                       num_key_value_heads=3, intermediate_size=1536, vocab_size=49152),
    "huggingfacetb/smollm2-360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15,
                                       num_key_value_heads=5, intermediate_size=2560, vocab_size=49152),
    "huggingfacetb/smollm2-1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32,
                                       num_key_value_heads=32, intermediate_size=8192, vocab_size=49152),
    "meta-llama/llama-3.2-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                    num_key_value_heads=8, intermediate_size=8192, vocab_size=128256, head_dim=64),
    "meta-llama/llama-3.2-3b": dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24,
                                    num_key_value_heads=8, intermediate_size=8192, vocab_size=128256, head_dim=128),
    "meta-llama/llama-3.1-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                    num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                                    tie_word_embeddings=False),
}  # fmt: skip


def _known(name: str) -> dict[str, Any] | None:
    key = name.lower().removesuffix("-instruct").removesuffix("-it")
    key = re.sub(r"-(instruct|chat)$", "", key)
    return KNOWN.get(key) or KNOWN.get(key.replace("meta-llama/meta-", "meta-llama/"))


def _from_name(name: str) -> ModelShape | None:
    """A typical decoder of the size the name states (``7B``, ``135M``)."""
    match = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", name.lower().replace("_", "-"))
    if not match:
        return None
    n = float(match.group(1)) * (1e9 if match.group(2) == "b" else 1e6)
    layers = 24 if n < 1e9 else 32 if n < 2e10 else 80
    hidden = int(round((n / (12 * layers)) ** 0.5 / 64) * 64) or 64
    return ModelShape(int(n), hidden, layers, max(1, hidden // 128), max(1, hidden // 512), 4 * hidden, 32000, "name")


def model_shape(name: str, plan_dir: Path) -> ModelShape:
    """The size and shape of ``models.base`` (or a teacher, a judge): see the module docstring.

    Raises:
        InputError: neither a readable local config, a known id, nor a size in the name.
    """
    local = Path(name) if Path(name).is_absolute() else plan_dir / name
    config_file = local / "config.json"
    if config_file.exists():
        try:
            config = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{config_file}: unreadable config ({exc})") from None
        shape = _llama_shape(config, "config.json")
        return shape or _meta_count(local, config)
    known = _known(name)
    if known is not None:
        shape = _llama_shape(known, "known config")
        assert shape is not None
        return shape
    guessed = _from_name(name)
    if guessed is not None:
        return guessed
    raise InputError(
        f"{name}: model size unknown (not a local folder with config.json, a known id, or a size in its name)"
    )


def _meta_count(folder: Path, config: dict[str, Any]) -> ModelShape:
    """Any architecture transformers knows: count parameters on the meta device (no weights load)."""
    from pipelines.stages.train import count_parameters

    n = count_parameters(str(folder))
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    hidden = int(text.get("hidden_size") or text.get("d_model") or 1024)
    layers = int(text.get("num_hidden_layers") or text.get("n_layer") or 24)
    heads = int(text.get("num_attention_heads") or text.get("n_head") or max(1, hidden // 64))
    vocab = int(text.get("vocab_size") or 32000)
    kv = int(text.get("num_key_value_heads") or heads)
    return ModelShape(
        n, hidden, layers, heads, kv, int(text.get("intermediate_size") or 4 * hidden), vocab, "config.json"
    )
