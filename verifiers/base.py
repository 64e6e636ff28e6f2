"""The verifier contract shared by every verifier in this package.

A verifier judges one model response against one reference and returns a
:class:`Verdict`. It never raises on model output and never hangs: parse
failures, timeouts and crashes become a failed verdict whose ``reason`` says why.

Three ways to use one::

    >>> from verifiers import get
    >>> v = get("math")
    >>> v.verify("so the answer is \\\\boxed{1/2}", "0.5").passed
    True
    >>> reward = v.as_reward()          # TRL GRPOTrainer reward_funcs form
    >>> reward(completions=["\\\\boxed{2}"], answer=["2"])
    [1.0]

``reason`` reads as ``"<status>: <detail>"``; ``reason.split(":")[0]`` is the
status (``pass``, ``fail``, ``timeout``, ``error``, ``too_large``, ``skip`` ...).
A verifier that cannot judge a pair (no reference, unparseable gold) returns a
verdict with ``score=None`` semantics exposed as ``Verdict.gradable is False``;
rewards turn those into ``None`` so TRL leaves the row out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Statuses that mean "the verifier could not judge this pair" (not a wrong answer).
UNGRADABLE = frozenset({"skip"})


@dataclass(frozen=True)
class Verdict:
    """The outcome of one verification.

    Attributes:
        passed: True only when the response is judged correct.
        score: A number in [0, 1] (1.0 for a pass in binary verifiers).
        reason: ``"<status>: <detail>"``; the status is the part before the colon.
        extracted: What the verifier read as the answer, if anything.
        meta: Extra facts (isolation level, component scores, timings).
    """

    passed: bool
    score: float
    reason: str
    extracted: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.reason.split(":", 1)[0].strip()

    @property
    def gradable(self) -> bool:
        """False when the verifier could not judge (missing or unparseable reference)."""
        return self.status not in UNGRADABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "score": self.score,
            "reason": self.reason,
            "extracted": self.extracted,
            "meta": self.meta,
        }


def passed(detail: str = "", extracted: str | None = None, score: float = 1.0, **meta: Any) -> Verdict:
    return Verdict(True, score, f"pass: {detail}".rstrip(": ").rstrip(), extracted, meta)


def failed(status: str, detail: str = "", extracted: str | None = None, score: float = 0.0, **meta: Any) -> Verdict:
    reason = f"{status}: {detail}" if detail else status
    return Verdict(False, score, reason, extracted, meta)


def skipped(detail: str) -> Verdict:
    """A verdict for a pair the verifier cannot judge (reward ``None``)."""
    return failed("skip", detail)


@runtime_checkable
class Verifier(Protocol):
    """What every verifier offers. Implementations are plain classes."""

    name: str

    def verify(self, response: str, reference: Any) -> Verdict: ...

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]: ...

    def as_reward(self, reference_field: str = "answer", **kwargs: Any) -> Callable[..., list[float | None]]: ...


def text_problem(response: Any, max_chars: int) -> Verdict | None:
    """A failed verdict when ``response`` is not text or longer than ``max_chars``, else None."""
    if not isinstance(response, str):
        return failed("fail", f"response is {type(response).__name__}, not text")
    if len(response) > max_chars:
        return failed("too_large", f"{len(response)} chars > {max_chars}")
    return None


def tag_contents(text: str, tag: str = "answer") -> list[str]:
    """Contents of every ``<tag>...</tag>`` (case-insensitive); linear time."""
    low = text.lower()
    opener, closer = f"<{tag}>", f"</{tag}>"
    out, pos = [], 0
    while True:
        i = low.find(opener, pos)
        if i < 0:
            return out
        j = low.find(closer, i + len(opener))
        if j < 0:
            return out
        out.append(text[i + len(opener) : j])
        pos = j + len(closer)


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a plain string or a conversational message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        parts = [
            m.get("content", "")
            for m in completion
            if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
        ]
        return "".join(str(p) for p in parts if p is not None)
    return "" if completion is None else str(completion)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _verify_one(args: tuple[Verifier, str, Any]) -> Verdict:
    verifier, response, reference = args
    try:
        return verifier.verify(response, reference)
    except Exception as exc:  # a verifier bug is an error outcome, never a crash of the batch
        return failed("error", f"{type(exc).__name__}: {exc}")


def map_verify(
    verifier: Verifier, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
) -> list[Verdict]:
    """Verify pairs in a process pool, keeping order. ``workers=1`` runs in-process.

    Verifiers with their own worker pools (math, code) implement ``verify_batch``
    themselves; this is the generic fallback for cheap, picklable verifiers.
    """
    if len(responses) != len(references):
        raise ValueError(f"{len(responses)} responses but {len(references)} references")
    items = [(verifier, r, ref) for r, ref in zip(responses, references, strict=True)]
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) < 2:
        return [_verify_one(it) for it in items]
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(_verify_one, items, chunksize=max(1, len(items) // (workers * 4))))


class BatchedVerifier:
    """``verify_batch`` and ``as_reward`` for a class that defines ``verify``.

    Verifiers inherit these instead of writing them out. ``verify_batch`` uses
    :func:`map_verify` (a process pool) unless the subclass has its own pool;
    ``as_reward`` wraps :func:`make_reward` with ``workers`` defaulting to
    :attr:`reward_workers`.
    """

    name: str
    #: ``workers`` for ``as_reward`` when the caller gives none (1: in-process).
    reward_workers: int | None = 1

    def verify(self, response: str, reference: Any) -> Verdict:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]:
        return map_verify(self, responses, references, workers)

    def as_reward(self, reference_field: str = "answer", **kwargs: Any) -> Callable[..., list[float | None]]:
        """A TRL reward function: one score per completion, ``None`` where ungradable."""
        kwargs.setdefault("workers", self.reward_workers)
        return make_reward(self, reference_field, **kwargs)


def make_reward(
    verifier: Verifier,
    reference_field: str | None = "answer",
    name: str | None = None,
    workers: int | None = 1,
) -> Callable[..., list[float | None]]:
    """Wrap a verifier as a TRL reward function.

    The returned function takes TRL's keyword arguments (``prompts``,
    ``completions``, every dataset column, ...) and returns one float per
    completion, or ``None`` where the verifier cannot grade. A verifier whose
    ``needs_reference`` is True (the default: correctness checks) skips rows
    without a reference; one with ``needs_reference = False`` (format checks)
    grades every row, passing the reference column through where present.

    Example::

        >>> from verifiers import get
        >>> reward = get("math").as_reward(reference_field="answer")
        >>> reward(prompts=["1+1?"], completions=[[{"role": "assistant", "content": "\\\\boxed{2}"}]], answer=["2"])
        [1.0]
    """

    needs_reference = getattr(verifier, "needs_reference", True)

    def reward(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float | None]:
        refs = columns.get(reference_field) if reference_field else None
        refs = list(refs) if refs is not None else [None] * len(completions)
        texts = [completion_text(c) for c in completions]
        out: list[float | None] = [None] * len(texts)
        todo = [i for i, ref in enumerate(refs) if not needs_reference or (ref is not None and ref != "")]
        verdicts = verifier.verify_batch([texts[i] for i in todo], [refs[i] for i in todo], workers=workers)
        for i, v in zip(todo, verdicts, strict=True):
            out[i] = float(v.score) if v.gradable else None
        return out

    reward.__name__ = name or f"{verifier.name}_reward"
    return reward
