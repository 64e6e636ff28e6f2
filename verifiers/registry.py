"""Build verifiers by the names plan files use, and combine them by weight."""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from typing import Any

from verifiers.base import BatchedVerifier, Verdict, Verifier, failed

#: name -> "module:Class". Modules load lazily so ``import verifiers`` stays light.
REGISTRY: dict[str, str] = {
    "math": "verifiers.math:MathVerifier",
    "code": "verifiers.code:CodeVerifier",
    "game24": "verifiers.game24:Game24Verifier",
    "json": "verifiers.schema:JsonVerifier",
    "think_answer": "verifiers.format:ThinkAnswerVerifier",
    "regex": "verifiers.format:RegexVerifier",
    "length": "verifiers.format:LengthVerifier",
    "overlong": "verifiers.format:OverlongPenalty",
    "exact": "verifiers.format:ExactMatchVerifier",
    "judge": "verifiers.judge:JudgeVerifier",
    "reward_model": "verifiers.reward_model:RewardModelVerifier",
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


def option_problems(name: str, options: Any = None, build: bool = True) -> list[str]:
    """Every problem with ``verifier: {name: ..., options: {...}}``, one short line each.

    Checked in one pass, before any model loads: the name is registered and its
    module imports; each option is a parameter of the verifier's constructor
    (``inspect.signature(cls).bind``); required ones are present; values match
    the annotation where it can tell (``int``, ``float``, ``bool``, ``str``,
    lists, mappings, unions with ``None``). When all that holds and ``build`` is
    set, the verifier is built once, so a value it refuses (a bad regex, a
    schema keyword it cannot check) is reported too. Empty means the plan's
    verifier will build.

    >>> option_problems("math", {"bogus": 1, "timeout_s": "3"})  # doctest: +NORMALIZE_WHITESPACE
    ["verifier 'math': unknown option 'bogus'; accepted: timeout_s, fallback_last_number, memory_mb,
      max_workers, cache_size", "verifier 'math': option 'timeout_s' must be float, got str '3'"]
    >>> option_problems("judges")  # doctest: +NORMALIZE_WHITESPACE
    ["unknown verifier 'judges'; known: code, exact, game24, json, judge, length, math, overlong, regex,
      reward_model, think_answer"]
    """
    try:
        cls = resolve(name)
    except UnknownVerifier as exc:
        return [str(exc)]
    except Exception as exc:  # its module failed to import
        return [f"verifier {name!r} is not available: {type(exc).__name__}: {exc}"]
    where = f"verifier {name!r}"
    if options is None:
        options = {}
    if not isinstance(options, dict):
        return [f"{where}: options must be a mapping, got {type(options).__name__}"]
    sig = inspect.signature(cls)
    params = {k: p for k, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not evaluate: no type checks
        hints = {}
    problems = []
    for key, value in options.items():
        if key not in params:
            if not open_ended:
                problems.append(f"{where}: unknown option {key!r}; accepted: {', '.join(params) or 'none'}")
        elif key in hints and not _fits(value, hints[key]):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            problems.append(
                f"{where}: option {key!r} must be {_type_name(hints[key])}, got {type(value).__name__} {shown}"
            )
    for key, p in params.items():
        if p.default is p.empty and key not in options:
            problems.append(f"{where}: missing required option {key!r}")
    if problems:
        return problems
    try:
        sig.bind(**options)
    except TypeError as exc:
        return [f"{where}: {exc}"]
    if build:
        try:
            verifier = cls(**options)
        except Exception as exc:  # the constructor refused a value
            return [f"{where}: {exc}"]
        close = getattr(verifier, "close", None)
        if callable(close):
            close()
    return []


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` can be of type ``hint``; True where the hint cannot tell."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # YAML writes 3 for 3.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type or origin is type:
        return isinstance(value, type)
    if origin in (list, tuple, collections.abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        ok = isinstance(value, (list, tuple))
        return ok and (len(args) != 1 or all(_fits(v, args[0]) for v in value))
    if hint is dict or origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is not None:
        return {dict: "a mapping", collections.abc.Mapping: "a mapping", type: "a class"}.get(origin, "a list")
    return getattr(hint, "__name__", str(hint))


class Composite(BatchedVerifier):
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
