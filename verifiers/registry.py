"""Build verifiers by the names plan files use, and combine them by weight."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from verifiers.base import Verdict, Verifier, failed, make_reward, map_verify

#: name -> "module:Class". Modules load lazily so ``import verifiers`` stays light.
REGISTRY: dict[str, str] = {
    "math": "verifiers.math:MathVerifier",
    "code": "verifiers.code:CodeVerifier",
    "game24": "verifiers.game24:Game24Verifier",
    "json": "verifiers.format:JsonVerifier",
    "think_answer": "verifiers.format:ThinkAnswerVerifier",
    "regex": "verifiers.format:RegexVerifier",
    "length": "verifiers.format:LengthVerifier",
    "overlong": "verifiers.format:OverlongPenalty",
    "exact": "verifiers.format:ExactMatchVerifier",
    "judge": "verifiers.judge:JudgeVerifier",
}


class UnknownVerifier(ValueError):
    pass


def names() -> list[str]:
    return sorted(REGISTRY)


def resolve(name: str) -> type:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownVerifier(f"unknown verifier {name!r}; known: {', '.join(names())}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get(name: str, **options: Any) -> Verifier:
    """Build a verifier by name, as ``verifier: {name: ..., options: {...}}`` in a plan.

    >>> get("exact").verify("Paris", "paris").passed
    True
    """
    return resolve(name)(**options)


class Composite:
    """A weighted sum of named verifiers, e.g. correctness plus format.

    The verdict passes when every component with positive weight passes. Its
    score is ``sum(w * score) / sum(w)``, and ``meta["components"]`` keeps each
    component's raw score and reason so reward hacking stays visible.

    >>> c = Composite({"exact": (get("exact"), 0.8), "format": (get("regex", pattern=r"^[A-Z]"), 0.2)})
    >>> v = c.verify("Paris", "paris")
    >>> v.passed, v.meta["components"]["format"]["score"]
    (True, 1.0)
    """

    name = "composite"

    def __init__(self, components: dict[str, tuple[Verifier, float]]):
        if not components:
            raise ValueError("a Composite needs at least one component")
        self.components = components
        self.total = sum(w for _, w in components.values()) or 1.0
        # grades a row without a reference when any component can (e.g. a format check)
        self.needs_reference = all(getattr(v, "needs_reference", True) for v, _ in components.values())

    def verify(self, response: str, reference: Any) -> Verdict:
        parts: dict[str, dict[str, Any]] = {}
        score = 0.0
        ok = True
        gradable = False
        for label, (verifier, weight) in self.components.items():
            try:
                v = verifier.verify(response, reference)
            except Exception as exc:
                v = failed("error", f"{type(exc).__name__}: {exc}")
            parts[label] = {"score": v.score, "passed": v.passed, "reason": v.reason, "weight": weight}
            if v.gradable:
                gradable = True
                score += weight * v.score
                ok = ok and (v.passed or weight <= 0)
        if not gradable:
            return failed("skip", "no component could grade this pair", components=parts)
        reason = (
            "pass: all components passed"
            if ok
            else "fail: " + ", ".join(f"{k}={p['reason']}" for k, p in parts.items() if not p["passed"])
        )
        return Verdict(ok, score / self.total, reason, None, {"components": parts})

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]:
        return map_verify(self, responses, references, workers)

    def as_reward(self, reference_field: str = "answer", **kwargs: Any) -> Callable[..., list[float | None]]:
        return make_reward(self, reference_field, name="composite_reward", **kwargs)
