"""The ``hf`` backend: transformers on CPU or GPUs, batched with left padding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.generation.base import (
    GenerationError,
    ProgressCallback,
    Prompt,
    _check_args,
    to_messages,
    truncate_at_stop,
)


def _is_out_of_memory(err: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError subclasses RuntimeError; MPS and older CUDA paths
    # raise a plain RuntimeError whose message says "out of memory".
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class HFGenerator:
    """Generate with ``transformers`` on CPU or one GPU, in adaptive left-padded batches.

    Args:
        model: A model directory (or hub id, where a hub is reachable).
        batch_size: Sequences per forward batch to start with (``n`` copies of a prompt
            count as ``n`` sequences). Halved on out-of-memory, down to 1.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"`` (float32 on
            CPU, bfloat16 on GPU).
        on_progress: Called after every batch with the number of prompts whose ``n``
            completions are all done; the stage runner drives a progress bar with it.
        threads: torch's intra-op threads for this process (``torch.set_num_threads``);
            ``None`` leaves torch's setting alone. On a shared CPU, one thread per core
            that is really free beats torch's default by several times.

    Attributes:
        batch_size: The current batch size (smaller after an out-of-memory retry).
        oom_retries: How many batches were retried at a halved size.
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "auto",
        on_progress: ProgressCallback | None = None,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "float32" if self.device == "cpu" else "bfloat16"
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.model_name = str(model)
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.oom_retries = 0
        # The model's own end-of-turn ids (chat models often have several).
        eos = self.model.generation_config.eos_token_id
        self._eos_token_id = eos if eos is not None else self.tokenizer.eos_token_id

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids for one prompt: chat template for conversations, plain otherwise."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt)["input_ids"]
        if not self.tokenizer.chat_template:
            raise GenerationError(
                f"model {self.model_name} has no chat template: pass plain-string prompts or a chat model"
            )
        text = self.tokenizer.apply_chat_template(to_messages(prompt), tokenize=False, add_generation_prompt=True)
        # The template already holds the special tokens (bos, role markers).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """Sample ``n`` completions per prompt; see :class:`Generator`."""
        _check_args(n, temperature, top_p, max_new_tokens)
        encoded = [self.encode(p) for p in prompts]
        rows = [(i, j) for i in range(len(prompts)) for j in range(n)]  # (prompt, sample)
        # Longest first: similar lengths share a batch (less padding), and a batch that
        # runs out of memory does so at the start, not after an hour.
        order = sorted(range(len(rows)), key=lambda r: (-len(encoded[rows[r][0]]), r))
        results = [[""] * n for _ in prompts]
        remaining = [n] * len(prompts)
        finished = 0
        pos = 0
        while pos < len(order):
            chunk = order[pos : pos + self.batch_size]
            try:
                texts = self._generate_batch(
                    [encoded[rows[r][0]] for r in chunk],
                    temperature=temperature,
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                    # Seeded per batch offset, so a retried batch draws the same numbers;
                    # the multiplier keeps calls seeded 0, 1, 2... (one per shard) apart.
                    seed=None if seed is None else (seed * 1_000_003 + pos) % 2**63,
                    stop=stop,
                )
            except RuntimeError as err:
                if not _is_out_of_memory(err):
                    raise
                if self.batch_size == 1:
                    raise GenerationError(
                        f"out of memory generating with {self.model_name} even at batch size 1: "
                        "lower max_new_tokens, use a smaller model, or a larger device"
                    ) from err
                self.batch_size //= 2
                self.oom_retries += 1
                _release_cuda_cache()
                continue
            for r, text in zip(chunk, texts, strict=True):
                i, j = rows[r]
                results[i][j] = truncate_at_stop(text, stop)
                remaining[i] -= 1
                finished += remaining[i] == 0
            pos += len(chunk)
            if self.on_progress is not None:
                self.on_progress(finished)
        return results

    def _generate_batch(
        self,
        batch: list[list[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int | None,
        stop: Sequence[str] | None,
    ) -> list[str]:
        """Decode one left-padded batch and return the new text of each row."""
        import torch
        from transformers import GenerationConfig

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        sampling = temperature > 0
        # A fresh config, not the model's: the same knobs mean the same thing on every
        # backend (no silent top_k=50 or repetition penalty from generation_config.json).
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            pad_token_id=pad,
            eos_token_id=self._eos_token_id,
            **({"temperature": temperature, "top_p": top_p, "top_k": 0} if sampling else {}),
        )
        extra: dict[str, Any] = {}
        if stop and any(stop):
            # Stop early; the text is still cut by truncate_at_stop afterwards.
            config.stop_strings = [s for s in stop if s]
            extra["tokenizer"] = self.tokenizer  # HF matches stop strings through it
        if seed is not None:
            torch.manual_seed(seed)  # seeds every device
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **extra
            )
        return self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)


def _release_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
