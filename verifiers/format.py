"""Format verifiers: structure, JSON, patterns, length, and short exact answers.

These judge *how* a response is written, or short answers that need no maths
engine. Each is cheap, deterministic and picklable, so ``verify_batch`` runs
them in a process pool (``workers=1`` keeps it in-process).

=======================  ============================================  =========
verifier (registry name) checks                                        reference
=======================  ============================================  =========
``ThinkAnswerVerifier``  ``<think>..</think><answer>..</answer>``,     ignored
(``think_answer``)       once each, in order, only whitespace around
``JsonVerifier``         parses as JSON (last fenced block or whole    optional
(``json``)               text); optional JSON Schema / pydantic model
                         (defined in ``verifiers.schema``, with the
                         schema checker; re-exported here)
``RegexVerifier``        ``re.search`` (or full match) of a pattern     ignored
(``regex``)
``LengthVerifier``       character / word counts within bounds         ignored
(``length``)
``OverlongPenalty``      DAPO soft overlong punishment, score in       ignored
(``overlong``)           [-1, 0]: a *penalty*, see its docstring
``ExactMatchVerifier``   normalised short answer equals the reference  required
(``exact``)              (or one of a list of accepted answers)
=======================  ============================================  =========

The reference-free verifiers set ``needs_reference = False``, so their
``as_reward`` (and a :class:`verifiers.Composite` made only of them) grades every
row: TRL rows with no reference column still get a score, where a correctness
verifier returns ``None``.

>>> from verifiers.format import ThinkAnswerVerifier, JsonVerifier, OverlongPenalty
>>> ThinkAnswerVerifier().verify("<think>3*8</think> <answer>24</answer>", None).reason
'pass: well-formed'
>>> JsonVerifier(schema={"type": "object", "required": ["x"]}).verify('```json\\n{"y": 1}\\n```', None).reason
"fail: schema: $: missing required property 'x'"
>>> [OverlongPenalty(max_length=10, cache_length=4).penalty(n) for n in (6, 8, 10, 11)]
[0.0, -0.5, -1.0, -1.0]
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from verifiers.base import (
    BatchedVerifier,
    Verdict,
    failed,
    make_reward,
    passed,
    skipped,
    tag_contents,
    text_problem,
)
from verifiers.schema import (
    MAX_RESPONSE_CHARS,
    JsonVerifier,
    extract_json_text,
    json_equal,
    parse_json,
    validate_schema,
)

__all__ = [
    "MAX_RESPONSE_CHARS",
    "ExactMatchVerifier",
    "JsonVerifier",
    "LengthVerifier",
    "OverlongPenalty",
    "RegexVerifier",
    "ThinkAnswerVerifier",
    "extract_json_text",
    "extract_short_answer",
    "json_equal",
    "normalize_answer",
    "parse_json",
    "validate_schema",
]

# --------------------------------------------------------------------------- think/answer

_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)
_THINK_ANSWER = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL | re.IGNORECASE)


class ThinkAnswerVerifier(BatchedVerifier):
    """The R1 format reward: ``<think>...</think><answer>...</answer>``.

    Passes when the response holds exactly one think block followed by exactly
    one answer block, with nothing but whitespace before, between and after.
    The answer must not be empty; the think block may be. The reference is
    ignored. ``extracted`` is the answer text.

    Args:
        prefilled_think: Set when the chat template already opened ``<think>``
            in the prompt, so completions start inside the think block.

    >>> v = ThinkAnswerVerifier()
    >>> v.verify("<think>hmm</think><answer>42</answer>", None).extracted
    '42'
    >>> v.verify("<answer>42</answer><think>hmm</think>", None).reason
    'fail: expected <think>...</think> then <answer>...</answer>, whitespace only outside'
    """

    name = "think_answer"
    needs_reference = False  # grades every row; a reference, where given, is optional

    def __init__(self, prefilled_think: bool = False):
        self.prefilled_think = prefilled_think

    def verify(self, response: str, reference: Any = None) -> Verdict:
        if (bad := text_problem(response, MAX_RESPONSE_CHARS)) is not None:
            return bad
        if self.prefilled_think and not response.lstrip().lower().startswith("<think>"):
            response = "<think>" + response
        tags = [t.lower() for t in _TAG.findall(response)]
        for tag in ("think", "answer"):
            opens, closes = tags.count(f"<{tag}>"), tags.count(f"</{tag}>")
            if (opens, closes) != (1, 1):
                return failed("fail", f"expected one <{tag}> block, found {opens} <{tag}> and {closes} </{tag}>")
        m = _THINK_ANSWER.fullmatch(response)
        if m is None:
            return failed("fail", "expected <think>...</think> then <answer>...</answer>, whitespace only outside")
        answer = m.group(2).strip()
        if not answer:
            return failed("fail", "empty <answer>")
        return passed("well-formed", extracted=answer)


# --------------------------------------------------------------------------- regex

_FLAG_NAMES = {"IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A"}


def _parse_flags(flags: int | str | Sequence[str]) -> int:
    if isinstance(flags, int):
        return flags
    names = re.split(r"[|,\s]+", flags) if isinstance(flags, str) else list(flags)
    value = 0
    for n in (n.strip().upper().removeprefix("RE.") for n in names):
        if not n:
            continue
        if n not in _FLAG_NAMES:
            raise ValueError(f"unknown regex flag {n!r}; use one of {sorted(_FLAG_NAMES)}")
        value |= getattr(re, n)
    return value


class RegexVerifier(BatchedVerifier):
    """The response matches a regular expression.

    Uses ``re.search`` by default. With ``fullmatch=True`` the whole response,
    stripped of surrounding whitespace, must match. The reference is ignored.
    ``extracted`` is the matched text (group 1 if the pattern has groups).

    Known gap: Python regexes cannot be interrupted, so a pattern prone to
    catastrophic backtracking can still be slow on long responses. Patterns come
    from the plan, not from the model; keep them simple.

    Args:
        pattern: The regular expression.
        flags: ``re`` flags as an int, or names such as ``"IGNORECASE|DOTALL"``
            (a list of names works too, for YAML).
        fullmatch: Require the whole (stripped) response to match.

    >>> RegexVerifier(r"answer: (\\d+)", flags="IGNORECASE").verify("Answer: 42", None).extracted
    '42'
    """

    name = "regex"
    needs_reference = False  # grades every row; a reference, where given, is optional

    def __init__(self, pattern: str, flags: int | str | Sequence[str] = 0, fullmatch: bool = False):
        self.pattern = pattern
        self.fullmatch = fullmatch
        try:
            self.regex = re.compile(pattern, _parse_flags(flags))
        except re.error as exc:
            raise ValueError(f"regex pattern {pattern!r}: {exc}") from None

    def verify(self, response: str, reference: Any = None) -> Verdict:
        if (bad := text_problem(response, MAX_RESPONSE_CHARS)) is not None:
            return bad
        m = self.regex.fullmatch(response.strip()) if self.fullmatch else self.regex.search(response)
        if m is None:
            how = "does not fully match" if self.fullmatch else "no match for"
            return failed("fail", f"{how} /{self.pattern}/")
        text = m.group(1) if self.regex.groups else m.group(0)
        return passed(f"matched /{self.pattern}/", extracted=text)


# --------------------------------------------------------------------------- length


class LengthVerifier(BatchedVerifier):
    """Character and word counts lie within the given bounds (inclusive).

    Words are whitespace-separated runs. The reference is ignored. At least one
    bound is required; a verifier with none would pass everything.

    >>> LengthVerifier(max_words=3).verify("one two three four", None).reason
    'fail: 4 words > max_words 3'
    """

    name = "length"
    needs_reference = False  # grades every row; a reference, where given, is optional

    def __init__(
        self,
        min_chars: int | None = None,
        max_chars: int | None = None,
        min_words: int | None = None,
        max_words: int | None = None,
    ):
        if all(b is None for b in (min_chars, max_chars, min_words, max_words)):
            raise ValueError("LengthVerifier needs at least one of min_chars, max_chars, min_words, max_words")
        for lo, hi, unit in ((min_chars, max_chars, "chars"), (min_words, max_words, "words")):
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"min_{unit}={lo} is greater than max_{unit}={hi}")
        self.min_chars, self.max_chars = min_chars, max_chars
        self.min_words, self.max_words = min_words, max_words

    def verify(self, response: str, reference: Any = None) -> Verdict:
        if not isinstance(response, str):
            return failed("fail", f"response is {type(response).__name__}, not text")
        counts = {"chars": len(response), "words": len(response.split())}
        for unit, lo, hi in (
            ("chars", self.min_chars, self.max_chars),
            ("words", self.min_words, self.max_words),
        ):
            n = counts[unit]
            if lo is not None and n < lo:
                return failed("fail", f"{n} {unit} < min_{unit} {lo}", **counts)
            if hi is not None and n > hi:
                return failed("fail", f"{n} {unit} > max_{unit} {hi}", **counts)
        return passed(f"{counts['chars']} chars, {counts['words']} words", **counts)


# --------------------------------------------------------------------------- overlong


class OverlongPenalty(BatchedVerifier):
    """DAPO's soft overlong punishment. **Its score is a penalty in [-1, 0].**

    With ``L = max_length`` and ``C = cache_length``, a response of length ``n``
    scores::

        0                  if n <= L - C        (no penalty; passed)
        (L - C - n) / C    if L - C < n <= L    (linear ramp down to -1)
        -1                 if n > L

    Add it to a :class:`verifiers.registry.Composite` with a *positive* weight
    (the penalty is already negative), next to a correctness verifier, as DAPO
    does. ``passed`` means "no penalty". Length is counted in characters, or in
    tokens with ``unit="tokens"``.

    In ``as_reward`` with ``unit="tokens"``, TRL's ``completion_ids`` give the
    exact policy token counts, so no tokenizer is needed there. ``verify`` on
    text needs one; without it the verdict is ``skip`` (ungradable).

    Args:
        max_length: ``L``, the length at which the penalty reaches -1.
        cache_length: ``C``, the width of the ramp (0 makes it a step at ``L``).
        unit: ``"chars"`` or ``"tokens"``.
        tokenizer: For ``unit="tokens"``: an object with ``encode``, a callable
            returning the tokens, or a name/path loaded with transformers on
            first use.

    >>> p = OverlongPenalty(max_length=100, cache_length=20)
    >>> p.verify("x" * 90, None).score, p.verify("x" * 80, None).passed
    (-0.5, True)
    """

    name = "overlong"
    needs_reference = False  # grades every row; a reference, where given, is optional

    def __init__(self, max_length: int, cache_length: int, unit: str = "chars", tokenizer: Any = None):
        if max_length <= 0:
            raise ValueError(f"max_length must be > 0, got {max_length}")
        if not 0 <= cache_length <= max_length:
            raise ValueError(f"cache_length must be in [0, max_length={max_length}], got {cache_length}")
        if unit not in ("chars", "tokens"):
            raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")
        self.max_length, self.cache_length, self.unit = max_length, cache_length, unit
        self.tokenizer = tokenizer

    def penalty(self, length: int) -> float:
        """The penalty for a response of ``length`` units, in [-1, 0]."""
        soft_start = self.max_length - self.cache_length
        if length <= soft_start:
            return 0.0
        if length > self.max_length or self.cache_length == 0:
            return -1.0
        return (soft_start - length) / self.cache_length

    def _length(self, response: str) -> int | None:
        if self.unit == "chars":
            return len(response)
        tok = self.tokenizer
        if tok is None:
            return None
        if isinstance(tok, str):
            from transformers import AutoTokenizer  # lazy: only token-unit users need it

            tok = self.tokenizer = AutoTokenizer.from_pretrained(tok)
        if hasattr(tok, "encode"):
            try:
                return len(tok.encode(response, add_special_tokens=False))
            except TypeError:
                return len(tok.encode(response))
        return len(tok(response))

    def _verdict(self, length: int) -> Verdict:
        p = self.penalty(length)
        detail = f"{length} {self.unit} (soft limit {self.max_length - self.cache_length}, hard {self.max_length})"
        if p == 0.0:
            return passed(detail, score=0.0, length=length)
        return failed("fail", f"overlong: {detail}", score=p, length=length)

    def verify(self, response: str, reference: Any = None) -> Verdict:
        if not isinstance(response, str):
            return failed("fail", f"response is {type(response).__name__}, not text")
        length = self._length(response)
        if length is None:
            return skipped("unit='tokens' needs a tokenizer (as_reward reads TRL's completion_ids instead)")
        return self._verdict(length)

    def as_reward(
        self, reference_field: str = "answer", name: str | None = None, workers: int | None = 1
    ) -> Callable[..., list[float | None]]:
        """Penalty for every row; token lengths come from ``completion_ids`` when given."""
        by_text = make_reward(self, None, name, workers)

        def reward(prompts: Any = None, completions: Sequence[Any] = (), **columns: Any) -> list[float | None]:
            ids = columns.get("completion_ids")
            if self.unit == "tokens" and ids is not None:
                return [self.penalty(len(row)) for row in ids]
            return by_text(prompts=prompts, completions=completions)

        reward.__name__ = by_text.__name__
        return reward


# --------------------------------------------------------------------------- exact match

_ANSWER_PREFIX = re.compile(r"^[\W_]*(?:final\s+)?answer\b(?:\s+is\b)?\s*[:：]?[*_\s]*", re.IGNORECASE)


#: An extracted short answer longer than this fails without being normalised.
MAX_SHORT_ANSWER_CHARS = 10_000


def extract_short_answer(response: str) -> str:
    """The last ``<answer>`` block, else the last non-empty line minus an "Answer:" prefix."""
    tagged = tag_contents(response)  # linear, unlike a lazy regex on "<answer>" * n
    if tagged:
        return tagged[-1].strip()
    lines = [line.strip() for line in response.splitlines() if line.strip()]
    if not lines:
        return ""
    return _ANSWER_PREFIX.sub("", lines[-1], count=1).strip() or lines[-1]


def normalize_answer(text: str, case_sensitive: bool = False, strip_punctuation: bool = True) -> str:
    """Normalise a short answer for comparison.

    Applies NFKC, optional case folding, optional punctuation removal (keeping a
    decimal point between digits and a minus sign before a number), and
    collapses whitespace.

    >>> normalize_answer("  (B) Positive! ")
    'b positive'
    >>> normalize_answer("-3.5.")
    '-3.5'
    """
    s = unicodedata.normalize("NFKC", text)
    if not case_sensitive:
        s = s.casefold()
    if strip_punctuation:
        kept = []
        for i, ch in enumerate(s):
            if unicodedata.category(ch).startswith("P"):
                prev = s[i - 1] if i else " "
                nxt = s[i + 1] if i + 1 < len(s) else " "
                decimal = ch == "." and prev.isdigit() and nxt.isdigit()
                minus = ch == "-" and not prev.isalnum() and nxt.isdigit()
                if not (decimal or minus):
                    continue
            kept.append(ch)
        s = "".join(kept)
    return " ".join(s.split())


class ExactMatchVerifier(BatchedVerifier):
    """A short answer equals the reference after normalisation.

    For classification labels and short answers. The answer is the last
    ``<answer>`` block if there is one, else the last non-empty line (with an
    "Answer:" prefix dropped). The reference is a string or a list of accepted
    strings; a missing or empty reference makes the row ungradable (``skip``).

    Args:
        case_sensitive: Compare case as written.
        strip_punctuation: Drop punctuation before comparing (see
            :func:`normalize_answer`).

    >>> v = ExactMatchVerifier()
    >>> v.verify("Let me think.\\nAnswer: Positive.", ["positive", "pos"]).reason
    "pass: matches 'positive'"
    """

    name = "exact"

    def __init__(self, case_sensitive: bool = False, strip_punctuation: bool = True):
        self.case_sensitive = case_sensitive
        self.strip_punctuation = strip_punctuation

    def _norm(self, text: str) -> str:
        return normalize_answer(text, self.case_sensitive, self.strip_punctuation)

    def verify(self, response: str, reference: Any) -> Verdict:
        refs = reference if isinstance(reference, (list, tuple)) else [reference]
        accepted = [str(r) for r in refs if r is not None and not (isinstance(r, float) and math.isnan(r))]
        accepted = [r for r in accepted if self._norm(r)]
        if not accepted:
            return skipped("no usable reference answer")
        if (bad := text_problem(response, MAX_RESPONSE_CHARS)) is not None:
            return bad
        answer = extract_short_answer(response)
        if len(answer) > MAX_SHORT_ANSWER_CHARS:  # not a short answer, and not worth normalising
            return failed("fail", f"answer of {len(answer)} chars is not a short answer", extracted=answer[:80])
        got = self._norm(answer)
        if not got:
            return failed("fail", "no answer", extracted=answer)
        for r in accepted:
            if got == self._norm(r):
                return passed(f"matches {r!r}", extracted=answer)
        shown = accepted[0] if len(accepted) == 1 else accepted
        return failed("fail", f"{answer[:80]!r} is not {shown!r}", extracted=answer)
