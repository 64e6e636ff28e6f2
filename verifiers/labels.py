"""Reading a judge model's reply: a label (pass/fail, a score, a reason) or a preference.

Pure text parsing, with no model and no project import, so both the ``judge`` verifier
and the synthesize stage's judge panel (``pipelines.judging``) read replies the same way.

:func:`parse_label` reads a reply robustly: a JSON object (bare, in a code fence, or
inside prose), ``key: value`` lines, or a bare yes/no. A reply it cannot read is an
**abstention** (``Label.passed is None``), never a fail: a judge that rambles must not
sink a good pair. :func:`verifier_label` turns a verifier's verdict into one more vote.
:func:`parse_preference` reads a pairwise reply (``A``, ``B`` or a tie); unreadable is ``None``.

>>> parse_label('Sure! {"pass": true, "score": 8, "reason": "correct"}').passed
True
>>> parse_label("I cannot tell.").abstained
True
>>> parse_preference('{"winner": "B"}'), parse_preference("Answer A is better."), parse_preference("hmm")
('B', 'A', None)
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from typing import Any

_TRUE = {"true", "yes", "pass", "passed", "correct", "y", "1", "accept", "good"}
_FALSE = {"false", "no", "fail", "failed", "incorrect", "wrong", "n", "0", "reject", "bad"}
_PASS_KEYS = ("pass", "passed", "verdict", "correct", "label", "decision", "judgment", "judgement", "result")
_SCORE_KEYS = ("score", "rating", "grade")
_REASON_KEYS = ("reason", "reasoning", "explanation", "rationale", "justification")
_PY_LITERAL = {"true": "True", "false": "False", "null": "None"}
_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)  # an unclosed block runs to the end
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.S)
_KV_PASS = re.compile(
    r"\b(?:pass|passed|verdict|correct|label|decision|judge?ment|result)\"?\s*[:=]\s*[*\"'`]*\s*"
    r"(yes|no|true|false|pass|fail|passed|failed|correct|incorrect)\b",
    re.I,
)
_KV_SCORE = re.compile(r"\b(?:score|rating|grade)\"?\s*[:=]\s*[*\"'`]*\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+\b)?", re.I)
_FIRST_WORD = re.compile(r"^[\s*_`\"'#>]*(yes|no|pass|fail|true|false|correct|incorrect)\s*(?:[.,!:;)\-\n*]|$)", re.I)


@dataclass(frozen=True)
class Label:
    """One judge's label for one pair.

    Attributes:
        passed: The pass/fail vote; ``None`` is an abstention (unreadable reply, or a
            verifier that could not grade).
        score: 0-10, or ``None`` when the judge gave none (or it was out of range).
        reason: The judge's own reason, or why the reply was unreadable.
        raw: The reply as the judge wrote it.
    """

    passed: bool | None
    score: float | None
    reason: str
    raw: str

    @property
    def abstained(self) -> bool:
        """True when the label carries neither a pass/fail vote nor a score."""
        return self.passed is None and self.score is None

    def to_dict(self) -> dict[str, Any]:
        """The label as a provenance record (``pass``, ``score``, ``reason``, ``raw``)."""
        return {"pass": self.passed, "score": self.score, "reason": self.reason, "raw": self.raw}


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().strip(".!").lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _as_score(value: Any, scale: float = 10.0) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\s*", value)
        value = float(match.group(1)) if match else None
    if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= scale:
        return float(value)
    return None


def _json_objects(text: str) -> list[str]:
    """Every balanced ``{...}`` substring, outermost first, in order of appearance."""
    found: list[str] = []
    depth, start, quote, escaped = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch == '"' and depth:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found


def _load_mapping(candidate: str) -> dict[str, Any] | None:
    """A dict from JSON, JSON with trailing commas, or a Python literal; else None."""
    attempts = (
        lambda s: json.loads(s),
        lambda s: json.loads(re.sub(r",\s*([}\]])", r"\1", s)),
        lambda s: ast.literal_eval(re.sub(r"\b(true|false|null)\b", lambda m: _PY_LITERAL[m.group(1)], s)),
    )
    for attempt in attempts:
        try:
            value = attempt(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return {str(k).strip().lower(): v for k, v in value.items()}
    return None


def _label_from_mapping(data: dict[str, Any], raw: str, scale: float) -> Label | None:
    passed = next((_as_bool(data[k]) for k in _PASS_KEYS if k in data), None)
    score = next((_as_score(data[k], scale) for k in _SCORE_KEYS if k in data), None)
    if passed is None and score is None:
        return None
    reason = next((str(data[k]) for k in _REASON_KEYS if k in data), "")
    return Label(passed, score, reason, raw)


def parse_label(text: str | None, scale: float = 10.0) -> Label:
    """Read a judge's reply as a :class:`Label`; unreadable replies abstain.

    Tried in order: the last JSON object (in a code fence or in prose; trailing commas
    and Python literals such as ``True`` are tolerated) holding a pass or score key;
    ``pass: yes`` / ``score: 8/10`` lines; a reply whose first word is yes/no/pass/fail.
    ``<think>...</think>`` blocks (and an unclosed ``<think>`` to the end) are ignored. A score
    outside 0 to ``scale`` (default 10) is dropped (``None``).
    A score without a pass/fail vote stays a score: :func:`aggregate` uses it only for
    ``mean_score``.

    Args:
        text: The judge's reply.
        scale: The highest score the rubric allows.

    Returns:
        The label; ``passed is None`` and ``score is None`` when nothing was readable.

    >>> parse_label('Looks right. {"pass": true, "score": 8, "reason": "correct"}').passed
    True
    >>> parse_label("Verdict: FAIL\\nScore: 2/10").score
    2.0
    >>> parse_label("No, the sum is wrong.").passed
    False
    >>> parse_label("lorem ipsum").abstained
    True
    """
    raw = "" if text is None else str(text)
    body = _THINK.sub("", raw).strip()
    if not body:
        return Label(None, None, "abstain: empty reply", raw)
    # Last object first (a judge may quote the format before answering); fenced blocks
    # first of all; flat {...} last, in case a stray "{" in the prose unbalanced the scan.
    fenced = [c for block in _FENCE.findall(body) for c in _json_objects(block)]
    candidates = fenced[::-1] + _json_objects(body)[::-1] + _FLAT_OBJECT.findall(body)[::-1]
    for candidate in candidates:
        data = _load_mapping(candidate)
        label = _label_from_mapping(data, raw, scale) if data is not None else None
        if label is not None:
            return label
    kv_pass = _KV_PASS.findall(body)
    kv_score = _KV_SCORE.findall(body)
    passed = _as_bool(kv_pass[-1]) if kv_pass else None
    score = _as_score(kv_score[-1], scale) if kv_score else None
    if passed is None:
        first = _FIRST_WORD.match(body)
        passed = _as_bool(first.group(1)) if first else None
    if passed is None and score is None:
        return Label(None, None, "abstain: unparseable judge reply", raw)
    return Label(passed, score, body if len(body) <= 200 else body[:197] + "...", raw)


def verifier_label(verdict: Any) -> Label:
    """A verifier's :class:`~verifiers.base.Verdict` as one more vote on the panel.

    A verdict the verifier could not grade (``gradable`` is False: no or unparseable
    reference) abstains. The verifier's 0-1 score becomes 0-10.

    >>> from verifiers.base import passed, skipped
    >>> verifier_label(passed("match")).score
    10.0
    >>> verifier_label(skipped("no reference")).passed is None
    True
    """
    if not getattr(verdict, "gradable", True):
        return Label(None, None, verdict.reason, verdict.extracted or "")
    score = verdict.score
    score = None if score is None or not math.isfinite(score) else max(0.0, min(10.0, 10.0 * float(score)))
    return Label(bool(verdict.passed), score, verdict.reason, verdict.extracted or "")


# ---- pairwise replies ----

_WINNER_KEYS = ("winner", "preferred", "preference", "better", "choice", "answer", "verdict")
_TIE_WORDS = {"tie", "draw", "equal", "same", "both", "neither"}
_KV_WINNER = re.compile(
    r"\b(?:winner|preferred|preference|better|choice|verdict)\"?\s*[:=]\s*[*\"'`]*\s*(a|b|tie)\b", re.I
)
_SAYS_BETTER = re.compile(r"\b(?:answer|reply|response)\s+(a|b)\s+is\s+better\b", re.I)
_FIRST_CHOICE = re.compile(r"^[\s*_`\"'#>(\[]*(a|b|tie)\s*(?:[.,!:;)\]\-\n*]|$)", re.I)


def _as_choice(value: Any) -> str | None:
    word = str(value).strip().strip(".!*\"'()[]").lower()
    word = word.removeprefix("answer ").removeprefix("reply ").removeprefix("response ")
    if word in ("a", "b"):
        return word.upper()
    return "tie" if word in _TIE_WORDS else None


def parse_preference(text: str | None) -> str | None:
    """Read a pairwise judge's reply as ``"A"``, ``"B"`` or ``"tie"``; ``None`` when unreadable.

    Tried in order: a JSON object with a ``winner`` (or ``preferred``, ``better``...) key;
    ``winner: B`` lines; "Answer A is better"; a reply whose first word is A, B or tie.
    ``<think>`` blocks are ignored. ``None`` is an abstention, never a loss for either side.

    >>> parse_preference("```json\\n{\\"winner\\": \\"tie\\"}\\n```"), parse_preference("B.")
    ('tie', 'B')
    """
    body = _THINK.sub("", "" if text is None else str(text)).strip()
    if not body:
        return None
    fenced = [c for block in _FENCE.findall(body) for c in _json_objects(block)]
    for candidate in fenced[::-1] + _json_objects(body)[::-1]:
        data = _load_mapping(candidate)
        choice = next((_as_choice(data[k]) for k in _WINNER_KEYS if data and k in data), None)
        if choice is not None:
            return choice
    for pattern in (_KV_WINNER, _SAYS_BETTER):
        found = pattern.findall(body)
        if found:
            return _as_choice(found[-1])
    first = _FIRST_CHOICE.match(body)
    return _as_choice(first.group(1)) if first else None
