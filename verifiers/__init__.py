"""Verifiers: judge model outputs by code and rules, for rejection sampling and RL.

>>> import verifiers
>>> verifiers.get("math").verify(r"The answer is \\boxed{\\frac{1}{2}}", "0.5").passed
True

Every verifier returns a :class:`Verdict` and offers ``verify``, ``verify_batch``
and ``as_reward`` (TRL ``reward_funcs`` form). Heavy modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from verifiers.base import Verdict, Verifier, completion_text, make_reward
from verifiers.registry import REGISTRY, Composite, UnknownVerifier, get, names

_LAZY = {
    "MathVerifier": "verifiers.math",
    "CodeVerifier": "verifiers.code",
    "Game24Verifier": "verifiers.game24",
    "JsonVerifier": "verifiers.format",
    "ThinkAnswerVerifier": "verifiers.format",
    "RegexVerifier": "verifiers.format",
    "LengthVerifier": "verifiers.format",
    "OverlongPenalty": "verifiers.format",
    "ExactMatchVerifier": "verifiers.format",
}

__all__ = [
    "REGISTRY",
    "Composite",
    "UnknownVerifier",
    "Verdict",
    "Verifier",
    "completion_text",
    "get",
    "make_reward",
    "names",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
