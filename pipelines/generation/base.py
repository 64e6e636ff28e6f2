"""The generation interface every backend implements, and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

Message = Mapping[str, str]
Prompt = str | Sequence[Message]
ProgressCallback = Callable[[int], None]
BACKENDS = ("hf", "vllm", "openai")


class GenerationError(Exception):
    """A generation failure the user can act on (auth, unknown model, out of memory...).

    Args:
        message: One line saying what failed and what to do about it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Generator(Protocol):
    """What every backend provides; stages depend on this and nothing else."""

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
        """Sample ``n`` completions for each prompt.

        Args:
            prompts: Plain strings or conversations (lists of role/content messages).
            n: Completions per prompt.
            temperature: Sampling temperature; 0 means greedy.
            top_p: Nucleus sampling mass; 1.0 disables it.
            max_new_tokens: Upper bound on each completion's length in tokens.
            seed: Makes sampling repeatable; ``None`` for fresh randomness.
            stop: Strings that end a completion; the stop string itself is dropped.

        Returns:
            ``result[i]`` holds the ``n`` completions of ``prompts[i]``.
        """
        ...


def is_conversation(prompt: Prompt) -> bool:
    """Whether ``prompt`` is a list of chat messages rather than a plain string."""
    return not isinstance(prompt, str)


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def _check_args(n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
