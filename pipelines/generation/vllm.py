"""The ``vllm`` backend: vLLM's in-process engine."""

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


class VLLMGenerator:
    """Generate with ``vllm.LLM`` on one or more GPUs.

    Args:
        model: A model directory or hub id.
        tensor_parallel_size: GPUs to shard the model across.
        gpu_memory_utilization: Share of GPU memory vLLM may take (weights + KV cache).
        dtype: vLLM's ``dtype`` (``"auto"``, ``"bfloat16"``, ``"float16"``...).
        max_model_len: Context length cap; default the model's.
        on_progress: Called once, with the number of prompts, when a call finishes
            (vLLM batches everything in one call).
        **llm_options: Passed to ``vllm.LLM`` as they are (``enforce_eager``,
            ``enable_prefix_caching``, ``data_parallel_size``...).
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
        on_progress: ProgressCallback | None = None,
        **llm_options: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise GenerationError(
                "the vllm backend needs vLLM on a CUDA machine: pip install 'posttrain-advisor[vllm]'"
            ) from err
        self.model_name = str(model)
        self.on_progress = on_progress
        self.llm = LLM(
            model=str(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            **llm_options,
        )

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
        from vllm import SamplingParams

        _check_args(n, temperature, top_p, max_new_tokens)
        params = SamplingParams(
            n=n,
            temperature=temperature,  # vLLM treats 0 as greedy
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            seed=seed,  # vLLM derives seed + i for the i-th of the n samples
            stop=[s for s in stop if s] if stop else None,
            skip_special_tokens=True,
        )
        results: list[list[str]] = [[] for _ in prompts]
        plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if plain:
            outputs = self.llm.generate([prompts[i] for i in plain], sampling_params=params, use_tqdm=False)
            for i, out in zip(plain, outputs, strict=True):
                results[i] = self._texts(out, n, stop)
        if chats:
            outputs = self.llm.chat(
                [to_messages(prompts[i]) for i in chats],
                sampling_params=params,
                use_tqdm=False,
                add_generation_prompt=True,
            )
            for i, out in zip(chats, outputs, strict=True):
                results[i] = self._texts(out, n, stop)
        if self.on_progress is not None:
            self.on_progress(len(prompts))
        return results

    def _texts(self, request_output: Any, n: int, stop: Sequence[str] | None) -> list[str]:
        samples = sorted(request_output.outputs, key=lambda o: o.index)
        if len(samples) != n:
            raise GenerationError(f"vLLM returned {len(samples)} samples for a prompt, expected {n}")
        # vLLM already drops the stop string; cutting again is a no-op kept for symmetry.
        return [truncate_at_stop(s.text, stop) for s in samples]
