"""Text side of the math verifier: size checks, answer extraction, cleaning, fast paths.

Nothing here imports sympy, and every function is a linear scan or a regex
without nested quantifiers, so it is safe to run in the caller's process on
untrusted model output (after the size check). The sympy side lives in
``verifiers._math.parse`` and only ever runs inside a worker process.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from verifiers._math.numbers import decimal_match, numbers_match, simple_number
from verifiers.base import tag_contents

__all__ = ["decimal_match", "numbers_match", "simple_number"]  # re-exported: the worker side reads them here

#: A response longer than this is not judged at all (``too_large``).
MAX_RESPONSE_CHARS = 200_000
#: An extracted answer (or gold answer) longer than this is not parsed (``too_large``).
MAX_ANSWER_CHARS = 2_000
#: Brace/bracket nesting deeper than this is refused before parsing (``too_large``).
MAX_DEPTH = 40
#: Exponent nesting (a power tower) deeper than this is refused (``too_large``).
MAX_POWER_DEPTH = 3

UNICODE = {
    "\u03c0": "\\pi ",
    "\u221a": "\\sqrt",
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u00f7": "\\div ",
    "\u2212": "-",
    "\u2013": "-",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u221e": "\\infty ",
    "\u222a": "\\cup ",
    "\u00b1": "\\pm ",
    "\u00b0": "^\\circ ",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u00bd": "(1/2)",
    "\u00bc": "(1/4)",
    "\u00be": "(3/4)",
    "\u00b2": "^2",
    "\u00b3": "^3",
}

_SPACING = re.compile(r"\\(?:quad|qquad|;|:|>| )|~")
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|bigg|Bigg|big|Big)(?![A-Za-z])")
_TEXTCMD = re.compile(
    r"\\(?:textbf|textit|textrm|textnormal|mathrm|mathbf|mathit|mathsf|mathtt|mbox|hbox|operatorname|rm|text)\s*\{"
)
_THOUSANDS = re.compile(r"(?<![\d.,(\[{])([1-9]\d{0,2})((?:,\d{3})+)(?!\d|,\d|[)\]}])")
_THIN_THOUSANDS = re.compile(r"(?<![\d.])([1-9]\d{0,2})((?:(?:\\,|\{,\}| )\d{3})+)(?![\d])")


def depth_ok(s: str) -> bool:
    """False when brackets nest deeper than MAX_DEPTH or exponents form a tall tower."""
    depth = 0
    for ch in s:
        if ch in "{([":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "})]":
            depth -= 1
    # power tower: count '^' that are nested inside the braces of another '^{'
    tower = 0
    stack: list[bool] = []
    pending = False
    for ch in s:
        if ch == "^":
            pending = True
            continue
        if ch == "{":
            stack.append(pending)
            if pending:
                tower = max(tower, sum(stack))
            pending = False
        elif ch == "}":
            if stack:
                stack.pop()
        elif not ch.isspace():
            pending = False
    return tower <= MAX_POWER_DEPTH


def braces_balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _unwrap_cmd(s: str, pattern: re.Pattern[str], keep: str) -> str:
    """Replace ``\\cmd{X}`` with ``keep % X`` for every match (brace-balanced)."""
    out = []
    pos = 0
    while True:
        m = pattern.search(s, pos)
        if not m:
            out.append(s[pos:])
            return "".join(out)
        end = match_brace(s, m.end() - 1)
        if end < 0:
            out.append(s[pos:])
            return "".join(out)
        out.append(s[pos : m.start()])
        out.append(keep % s[m.end() : end])
        pos = end + 1


def match_brace(s: str, open_at: int) -> int:
    """Index of the brace closing the one at ``open_at``, or -1."""
    depth = 0
    for i in range(open_at, len(s)):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            continue
        if ch == "{" and (i == 0 or s[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or s[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return i
    return -1


_REPEAT_BAR = re.compile(r"(-?)(\d*)\.(\d*)\\overline\{(\d{1,12})\}")
_REPEAT_DOTS = re.compile(r"(-?)(\d*)\.(\d{2,40})(?:\\ldots|\\dots|\.\.\.|\u2026)")


def _repeating(sign: str, whole: str, fixed: str, period: str) -> str:
    """``0.1\\overline{6}`` as the exact fraction it names (1/6)."""
    value = Fraction(int(whole or 0)) + Fraction(int(fixed or 0), 10 ** len(fixed))
    value += Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(fixed))
    value = -value if sign else value
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}" if value.denominator != 1 else str(value.numerator)


def _dots(m: re.Match[str]) -> str:
    """``0.333\\ldots``: the shortest period its digits repeat at least twice at the end, else as written."""
    sign, whole, digits = m.group(1), m.group(2), m.group(3)
    for k in range(1, len(digits) // 2 + 1):
        if digits[-k:] == digits[-2 * k : -k]:
            start = len(digits) - 2 * k
            while start >= k and digits[start - k : start] == digits[-k:]:
                start -= k
            return _repeating(sign, whole, digits[:start], digits[start : start + k])
    return m.group(0)


def _notation(s: str) -> str:
    """Spellings with one meaning: repeating decimals, the reals, the empty set."""
    if "overline" in s:
        s = _REPEAT_BAR.sub(lambda m: _repeating(*m.groups()), s)
    if "dots" in s or "..." in s or "\u2026" in s:
        s = _REPEAT_DOTS.sub(_dots, s)
    s = re.sub(r"\\mathbb\s*\{?\s*R\s*\}?|\u211d", r"(-\\infty, \\infty)", s)
    return re.sub(r"\\(?:emptyset|varnothing)(?![A-Za-z])|\u2205|\\\{\s*\\\}", r"\\{\\}", s)


def clean(s: str) -> str:
    """Normalise LaTeX/unicode spelling without changing meaning.

    Removes sizing and spacing commands, ``$`` signs, ``\\boxed`` wrappers;
    unifies ``\\dfrac``/``\\tfrac``, text-style commands (to ``\\text{}``),
    unicode symbols, degree marks (to ``°``) and thousands separators.
    """
    s = s.strip().replace("\\\\", "\x01")  # protect matrix row breaks from the spacing rules
    for k, v in UNICODE.items():
        if k in s:
            s = s.replace(k, v)
    s = s.replace("\\left.", "").replace("\\right.", "")
    s = _notation(s)
    s = _SIZING.sub("", s)
    s = s.replace("\\displaystyle", "").replace("\\!", "").replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    s = re.sub(r"\\(?:leq|leqslant)(?![A-Za-z])", r"\\le", s)
    s = re.sub(r"\\(?:geq|geqslant)(?![A-Za-z])", r"\\ge", s)
    s = re.sub(r"\\neq(?![A-Za-z])", r"\\ne", s)
    s = re.sub(r"\\%|\s*\\?percent\b|\\text\{\s*%\s*\}", "%", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|\^\s*\{\s*o\s*\}", "°", s)
    s = _unwrap_cmd(s, re.compile(r"\\(?:boxed|fbox)\s*\{"), "%s")
    s = _unwrap_cmd(s, _TEXTCMD, "\\text{%s}")
    s = _THIN_THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\\,|\{,\}| ", "", m.group(2)), s)
    s = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    s = s.replace("{,}", ",").replace("\\,", " ")
    s = _SPACING.sub(" ", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s*([=<>+\-*/^_;()\[\]{}|&])\s*", r"\1", s)
    s = re.sub(r"\s*,\s*", ", ", s)  # list commas keep their space: a second clean must not see "2,100"
    s = re.sub(r"(?<=[^\d)}!])!+$", "", re.sub(r"[.,;:\s\x01]+$", "", s))
    return s.replace("\x01", " \\\\ ").strip()


# --------------------------------------------------------------------------- extraction

_ANSWER_MARK = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=|\\text\{\s*is\s*\})\s*(?:\\text\{\s*\}|:)?\s*",
    re.IGNORECASE,
)
_MATH_OPEN = re.compile(r"\$\$|(?<!\\)\$|\\\(|\\\[")
_MATH_CLOSE = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, inner) of each ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``; linear time."""
    out = []
    pos = 0
    while True:
        m = _MATH_OPEN.search(text, pos)
        if not m:
            return out
        close = _MATH_CLOSE[m.group(0)]
        end = text.find(close, m.end() + 1)
        while end > 0 and close == "$" and text[end - 1] == "\\":
            end = text.find(close, end + 1)
        if end < 0:  # no closer after here: none after any later opener either
            return out
        out.append((m.start(), end + len(close), text[m.end() : end]))
        pos = end + len(close)


_LAST_NUMBER = re.compile(r"-?(?:\\infty|\u221e)|-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?%?|-?\.\d+%?")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_PROSE = re.compile(r"(?<![\\A-Za-z{])[A-Za-z]{3,}")


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (and ``\\boxed 5``), in order; linear time."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])", text):
        if out and m.start() < out[-1][1]:
            continue  # inside the previous box
        k = m.end()
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            end = match_brace(text, k)
            if end < 0:
                break
            out.append((text[k + 1 : end], end + 1))
        elif k > m.end():
            word = re.match(r"[^\s$]+", text[k : k + MAX_ANSWER_CHARS + 1])
            if word:
                out.append((word.group(0), k + word.end()))
    return [c for c, _ in out]


def _sentence(text: str) -> str:
    """Text up to the end of the first line or sentence (at most MAX_ANSWER_CHARS + 1)."""
    text = text[: MAX_ANSWER_CHARS + 1].split("\n", 1)[0]
    spans = [(a, b) for a, b, _ in math_spans(text)]
    for m in re.finditer(r"\.(?=\s|$)", text):
        if not any(a <= m.start() < b for a, b in spans):
            return text[: m.start()]
    return text


def _math_or_self(text: str) -> str:
    spans = math_spans(text)
    if len(spans) == 1 and len(text) - (spans[0][1] - spans[0][0]) < 12:
        return spans[0][2]
    return text


def extract(response: str, fallback_last_number: bool = True, gold: bool = False) -> tuple[list[str], str]:
    """Answer candidates in a response and where they came from.

    Returns (candidates, source). Several different candidates of the top
    priority (two different ``\\boxed{}``) are all returned: that is hedging,
    judged by the caller. For a gold answer (``gold=True``) no prose markers or
    number fallback are used: an unmarked gold is the answer itself.
    """
    text = response
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if not gold:  # "prove that the answer is \\boxed{42}" restates the task, box or not
        text = _RESTATED.sub(" ", text)
    boxes = boxed_contents(text)
    if boxes:
        return _dedupe([_unbox(b) for b in boxes], key=str), "boxed"
    tags = tag_contents(text)
    if tags:
        inner = [extract(t, False, gold=False)[0] or [t] for t in tags]
        return _dedupe([c for cands in inner for c in cands], key=str), "answer_tag"
    if "####" in text:
        return [text.rsplit("####", 1)[1].strip().split("\n", 1)[0]], "gsm8k"
    if gold and not _worked(text):
        return [text.strip()], "whole"
    text = text.replace("**", " ").replace("__", " ") if not gold else text
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        rest = _NEGATED_TAIL.sub("", _sentence(text[marks[-1].end() :]).strip())
        if rest:
            return [_math_or_self(_stated_in(rest))], "answer_is"
    bold = _BOLD.findall(response) if not gold else []
    if bold:  # every bold answer counts, like boxes: "**41** or **42**" is hedging
        return _dedupe([b.strip() for b in bold], key=str), "bold"
    stripped = text.strip()
    short = len(stripped) <= 100 and "\n" not in stripped
    # "$5 for each, so $15" is currency, not math: skip spans that read as prose
    spans = [sp for sp in math_spans(text) if len(_PROSE.findall(_strip_commands(sp[2]))) < 2]
    if spans:
        return [spans[-1][2]], "math_span"
    if short:
        said = _STATED.search(stripped)  # "19 + 7 is 26." / "13 + 14 equals 27": the stated result
        if said and said.group(1).strip():
            return [said.group(1).strip()], "stated"
    if short and len(_WORD.findall(_strip_commands(stripped))) <= 2:
        return [stripped], "whole"
    if fallback_last_number:
        nums = _LAST_NUMBER.findall(text)
        if nums:
            return [nums[-1]], "last_number"
    if short:
        return [stripped], "whole"
    return [], "none"


#: "Show that the answer is 42": the task restated, not an answer (a sentence, dropped).
_RESTATED = re.compile(
    r"\b(?:prove|show|verify|check|confirm|demonstrate|explain\s+why)\s+that\b[^\n.]*(?:\.(?=\s|$)|\n|$)", re.IGNORECASE
)
#: "20, not 21" / "9 and not 10": the negated alternative is not a second answer.
_NEGATED_TAIL = re.compile(r"(?:,|;|\s+and|\s+but)?\s+(?:and\s+)?not\s+[^,;]{1,40}$", re.IGNORECASE)
_BOLD = re.compile(r"\*\*([^*\n]{1,60})\*\*")
_STATED_IN = re.compile(r"\s(?:is|equals|are|=)\s+(\S+)$")


def _stated_in(rest: str) -> str:
    """The value a prose answer states: "The smallest $k$ is 12" -> "12"; else the text itself."""
    if len(_PROSE.findall(_strip_commands(rest))) < 2:
        return rest
    m = _STATED_IN.search(rest)
    return m.group(1) if m else rest


def _worked(text: str) -> bool:
    """A gold that is a worked solution (several sentences of prose), read for its final answer."""
    return len(_PROSE.findall(_strip_commands(text))) >= 4 and bool(_ANSWER_MARK.search(text) or "\n" in text)


def _unbox(content: str) -> str:
    """``\\boxed{\\boxed{7}}`` is 7; any other box inside a box is refused (``NESTED``)."""
    while True:
        inner = content.strip()
        if not re.search(r"\\(?:boxed|fbox)(?![A-Za-z])", inner):
            return content
        boxes = boxed_contents(inner)
        if (
            len(boxes) == 1
            and re.fullmatch(r"\\(?:boxed|fbox)\s*\{.*\}", inner, re.DOTALL)
            and match_brace(inner, inner.index("{")) == len(inner) - 1
        ):
            content = boxes[0]
            continue
        return NESTED


#: The candidate a box holding other boxes becomes: never an answer (5\boxed{6} is not 30).
NESTED = "\x00nested boxes"

_STATED = re.compile(r"^[^a-zA-Z]*[0-9)][^a-zA-Z]*?\s(?:is|equals|gives|makes)\s+(-?[0-9][0-9.,/]*)\s*[.!]?$")


def _strip_commands(s: str) -> str:
    return re.sub(r"\\text\{[^{}]*\}|\\[A-Za-z]+", " ", s)


def _dedupe(items: list[str], key: Any = None) -> list[str]:
    seen: dict[str, str] = {}
    for it in items:
        seen.setdefault((key or canon)(it), it)
    return list(seen.values())


def canon(s: str) -> str:
    """A canonical spelling: two answers with the same canon mean the same thing."""
    return clean(s)


def fast_judge(pred: str, gold: str) -> bool | None:
    """Decide a cleaned pair without sympy when that is certain; None means 'ask the worker'."""
    if pred == gold and braces_balanced(gold):
        return True
    a, b = simple_number(pred), simple_number(gold)
    if a is not None and b is not None:
        return numbers_match(b[0], b[1], b[2], a[0], a[1], a[2])
    return None


#: A decimal comma where a list reading is unlikely: a zero whole part (0,75), and only against a
#: one-number gold. 3,5 stays the list {3, 5}, as it always was.
_DECIMAL_COMMA = re.compile(r"^(-?0), ?(\d+)$")


def _top_level_items(s: str) -> int:
    """How many comma-separated items ``s`` has outside brackets."""
    depth, n = 0, 1
    for ch in s:
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def prepare(response: object, reference: object, fallback_last_number: bool = True) -> tuple:
    """Everything that needs no sympy: size checks, extraction, cleaning, fast paths.

    Returns ``("done", status, detail, extracted)`` when the pair is decided, or
    ``("need", candidates, gold, extracted)`` when sympy must compare them.
    """
    if reference is None or (isinstance(reference, str) and not reference.strip()):
        return "done", "skip", "no reference answer", None
    if isinstance(reference, float) and reference.is_integer():
        reference = int(reference)
    ref = reference if isinstance(reference, str) else str(reference)
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    if len(ref) > MAX_RESPONSE_CHARS:
        return "done", "skip", f"unparseable gold: reference of {len(ref)} characters", None
    if len(text) > MAX_RESPONSE_CHARS:
        return "done", "too_large", f"response of {len(text)} characters (limit {MAX_RESPONSE_CHARS})", None
    golds, _ = extract(ref, gold=True)
    if golds and len(golds[-1]) > MAX_ANSWER_CHARS:
        return "done", "skip", f"unparseable gold: answer of {len(golds[-1])} characters", None
    gold = clean(golds[-1]) if golds else ""
    if not gold:
        return "done", "skip", "unparseable gold (empty)", None
    if len(gold) > MAX_ANSWER_CHARS or not depth_ok(gold):
        return "done", "skip", "unparseable gold (too large or too deeply nested)", None
    found, source = extract(text, fallback_last_number)
    for c in found:
        if len(c) > MAX_ANSWER_CHARS:
            return "done", "too_large", f"answer of {len(c)} characters (limit {MAX_ANSWER_CHARS})", c[:200]
    if NESTED in found:
        return "done", "fail", "a box inside a box is not an answer", None
    cands = _dedupe([c for c in (clean(x) for x in found) if c], key=str)
    if not cands:
        return "done", "fail", "no answer found", None
    items = _top_level_items(gold)
    if source == "boxed" and len(cands) > 1 and len(cands) == items:
        cands = [", ".join(cands)]  # \boxed{1}, \boxed{2} for the gold "1, 2": one answer in several boxes
    if items == 1 and simple_number(gold) is not None:
        cands = [_DECIMAL_COMMA.sub(r"\1.\2", c) for c in cands]
    extracted = cands[-1]
    for c in cands:
        if len(c) > MAX_ANSWER_CHARS:
            return "done", "too_large", f"answer of {len(c)} characters (limit {MAX_ANSWER_CHARS})", c[:200]
        if not depth_ok(c):
            return "done", "too_large", "answer nested too deeply (brackets or a power tower)", c[:200]
    fast = [fast_judge(c, gold) for c in cands]
    if all(f is not None for f in fast):
        if len(fast) > 1 and any(fast) and not all(fast):
            return "done", "fail", f"hedging: {len(cands)} different final answers", extracted
        if all(fast):
            return "done", "pass", f"equivalent ({source}, fast path)", extracted
        return "done", "fail", f"not equivalent ({source}, fast path)", extracted
    return "need", cands, gold, extracted
