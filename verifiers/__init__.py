"""Verifiers: judge model outputs by code and rules, for rejection sampling and RL.

>>> import verifiers
>>> verifiers.get("math").verify(r"The answer is \\boxed{\\frac{1}{2}}", "0.5").passed
True

Every verifier returns a :class:`Verdict` and offers ``verify``, ``verify_batch``
and ``as_reward`` (TRL ``reward_funcs`` form). Heavy modules load on first use.

What lives where:

- ``base``: the contract (``Verdict``, the ``Verifier`` protocol), ``make_reward``
  and ``BatchedVerifier``, which gives every verifier its ``verify_batch`` and
  ``as_reward``.
- ``registry``: plan names to classes, ``get``, ``Composite`` (weighted sums) and
  ``option_problems`` (a plan's verifier options checked before any compute).
- ``math``: answers judged by rules and sympy; its engine is the private
  ``_math`` package (extraction, LaTeX, structure, equivalence, killable workers).
- ``code``: programs run against tests; its sandbox is the private ``_sandbox``
  package (host pool, zygote worker, candidate and tests roles, isolated root).
- ``game24``: the 24 game. ``format``: think/answer, regex, length, overlong and
  exact-match checks. ``schema``: JSON answers, with the project's own JSON
  Schema checker.
- ``judge``: a generative judge model with a jinja2 rubric, pointwise or pairwise
  (both orders), for replies no rule can check; handed its model as a generator.
  ``reward_model``: a trained sequence classifier, thresholded and normalised by
  its held-out scores. ``labels``: reading judge replies (shared with the
  pipeline's judge panel).

Imports go one way: this package imports nothing else of the project (the
standard library; sympy inside the math workers; jinja2 for judge rubrics;
transformers only for an ``OverlongPenalty`` counting tokens by tokenizer name and
inside the reward model), so pipelines and the
app build on it, never the reverse.
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
    "JsonVerifier": "verifiers.schema",
    "ThinkAnswerVerifier": "verifiers.format",
    "RegexVerifier": "verifiers.format",
    "LengthVerifier": "verifiers.format",
    "OverlongPenalty": "verifiers.format",
    "ExactMatchVerifier": "verifiers.format",
    "JudgeVerifier": "verifiers.judge",
    "RewardModelVerifier": "verifiers.reward_model",
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
