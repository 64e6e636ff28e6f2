"""Answer strings to structured values: numbers with units, sets, tuples, intervals, ...

``parse`` splits an answer at its top level (lists, unions, brackets,
relations, ±, units and percent) and hands each single expression to
``verifiers._math.latex.to_sympy``. The values it returns are compared by
``verifiers._math.equal``. Worker side only: sympy may take unbounded time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import sympy

from verifiers._math.latex import MATH_WORDS, TRIG, ParseError, to_sympy
from verifiers._math.text import clean

# --------------------------------------------------------------------------- values


@dataclass
class Scalar:
    value: Any
    dec: bool = False
    pct: bool = False
    unit: str | None = None
    base: tuple[str, int] | None = None


@dataclass
class Text:
    text: str


@dataclass
class Choice:
    letter: str


@dataclass
class ChoiceValue:
    letter: str
    value: Any  # the node after the letter: "(C) 12"


@dataclass
class Seq:
    kind: str  # "set" | "tuple" | "list"
    items: list[Any]


@dataclass
class SetVal:
    value: Any  # a sympy Set
    from_ineq: bool


@dataclass
class Matrix:
    rows: list[list[Any]]


@dataclass
class Equation:
    var: str | None
    lhs: Any
    rhs: Any  # a node when var is set, else a sympy expression


# --------------------------------------------------------------------------- structure

_SEPS = re.compile(r",|;|\\text\{\s*(?:or|and)\s*\}|\s+(?:or|and)\s+|\\quad")
_REL = re.compile(
    r"\\le(?![A-Za-z])|\\ge(?![A-Za-z])|\\ne(?![A-Za-z])|\\lt(?![A-Za-z])|\\gt(?![A-Za-z])|<=|>=|!=|=|<|>"
)
_UNIT_SYN = {
    "meter": "m", "metre": "m", "centimeter": "cm", "centimetre": "cm", "millimeter": "mm", "kilometer": "km",
    "gram": "g", "kilogram": "kg", "second": "s", "sec": "s", "minute": "min", "hour": "h", "hr": "h",
    "dollar": "usd", "usd": "usd", "degree": "deg", "°": "deg", "inche": "in", "inch": "in", "foot": "ft",
    "feet": "ft", "mile": "mi", "liter": "l", "litre": "l", "unit": "", "squareunit": "", "cent": "cent",
}  # fmt: skip
#: Words that change what a number means when they follow it ("7 or more", "5 thousand",
#: "2 squared", "4 is wrong"): never a unit, so the answer is refused.
MEANING_WORDS = frozenset(
    [
        "or",
        "and",
        "not",
        "no",
        "nor",
        "is",
        "are",
        "was",
        "isnt",
        "more",
        "less",
        "fewer",
        "than",
        "least",
        "most",
        "at",
        "about",
        "approximately",
        "around",
        "roughly",
        "maybe",
        "perhaps",
        "possibly",
        "between",
        "to",
        "from",
        "thousand",
        "thousands",
        "million",
        "millions",
        "billion",
        "billions",
        "trillion",
        "hundred",
        "hundreds",
        "dozen",
        "dozens",
        "squared",
        "cubed",
        "times",
        "plus",
        "minus",
        "over",
        "of",
        "half",
        "double",
        "triple",
        "twice",
        "wrong",
        "incorrect",
        "false",
        "true",
        "answer",
        "none",
    ]
)
_UNIT2 = {"cm", "mm", "km", "kg", "mg", "ml", "ft", "in", "mi", "yd", "hr", "oz", "lb", "mph", "usd", "sec", "min"}


def split_top(s: str, pattern: re.Pattern[str]) -> list[str]:
    """Split at matches of ``pattern`` that lie outside all brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif depth == 0:
            m = pattern.match(s, i)
            if m and m.end() > i:
                parts.append(s[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(s[start:])
    return parts


def _outer_pair(s: str) -> bool:
    """True when the first character's bracket closes at the last character."""
    depth = 0
    for k, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and k != len(s) - 1:
                return False
    return depth == 0


def unit_name(u: str) -> str:
    u = re.sub(r"\\text\{([^{}]*)\}", r"\1", u).lower().replace(" ", "")
    u = re.sub(r"\^\{?(\d)\}?", r"\1", u)
    if u.endswith("s") and len(u) > 3 and not u.endswith("ss"):
        u = u[:-1]
    return _UNIT_SYN.get(u, u)


def _text_words(s: str) -> list[str]:
    s = re.sub(r"\\[A-Za-z]+", " ", s)
    return [w for w in re.findall(r"[A-Za-z]{3,}", s) if w.lower() not in MATH_WORDS]


@functools.lru_cache(maxsize=4096)  # the same gold is parsed for every sample of a prompt
def parse(s: str, depth: int = 0) -> Any:
    """An answer string to a value node (raises ParseError). Nodes are never mutated."""
    if depth > 6:
        raise ParseError("too deeply structured")
    s = clean(s)
    while re.fullmatch(r"\\text\{[^{}]*\}", s):
        s = clean(s[6:-1])
    if not s:
        raise ParseError("empty")
    m = re.fullmatch(r"\(([A-Ja-j])\)|([A-J])", s)
    if m:
        return Choice((m.group(1) or m.group(2)).upper())
    m = re.fullmatch(r"\(([A-J])\)\s*(?:\\text\{\s*\}\s*)?(\S.*)", s)
    if m:  # "(C) 12": the letter and the value it stands for
        return ChoiceValue(m.group(1), parse(m.group(2), depth + 1))
    if s.startswith("\\begin{"):
        return parse_matrix(s)
    s = re.sub(r"^[A-Za-z]\s*\\in(?![A-Za-z])\s*", "", s)  # "x \in (2, 3)" is the interval
    parts = [p for p in split_top(s, _SEPS) if p.strip()]
    if len(parts) > 1:
        items = [parse(p, depth + 1) for p in parts]
        if all(isinstance(it, SetVal) for it in items):
            return SetVal(sympy.Union(*[it.value for it in items]), all(it.from_ineq for it in items))
        return Seq("list", items)
    parts = split_top(s, re.compile(r"\\cup(?![A-Za-z])|\\vee"))
    if len(parts) > 1:
        sets = [as_set(parse(p, depth + 1)) for p in parts]
        return SetVal(sympy.Union(*[x.value for x in sets]), all(x.from_ineq for x in sets))
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2]
        return Seq("set", [parse(p, depth + 1) for p in split_top(inner, re.compile(",|;")) if p.strip()])
    if s.startswith("\\langle") and s.endswith("\\rangle"):
        return Seq("tuple", [parse(p, depth + 1) for p in split_top(s[7:-7], re.compile(","))])
    if s[0] in "([" and s[-1] in ")]" and _outer_pair(s):
        items = split_top(s[1:-1], re.compile(","))
        if len(items) == 1:
            return parse(s[1:-1], depth + 1)
        nodes = [parse(p, depth + 1) for p in items]
        if len(nodes) == 2 and s[0] + s[-1] != "()":
            a, b = (as_number(n) for n in nodes)
            return SetVal(sympy.Interval(a, b, s[0] == "(", s[-1] == ")"), False)
        return Seq("tuple", nodes)
    ratio = split_top(s, re.compile(r":"))
    if len(ratio) == 2 and all(re.fullmatch(r"-?[\d.]+", r.strip()) for r in ratio):
        a, b = (to_sympy(r.strip()) for r in ratio)
        if b == 0:
            raise ParseError("a ratio to zero")
        return Scalar(a / b)  # 7:32 is the number 7/32; 14:64 is the same ratio
    rel = _relation(s, depth)
    if rel is not None:
        return rel
    pm = re.search(r"\\(?:pm|mp)(?![A-Za-z])", s)
    if pm:  # a ± b is the set {a + b, a - b}, wherever the sign sits
        plus, minus = s[: pm.start()] + "+" + s[pm.end() :], s[: pm.start()] + "-" + s[pm.end() :]
        return Seq("set", [parse(plus, depth + 1), parse(minus, depth + 1)])
    return parse_scalar(s)


def parse_scalar(s: str) -> Any:
    """One number or expression, with its percent sign, unit or base subscript split off."""
    pct = s.endswith("%")
    if pct:
        s = s[:-1].strip()
    unit = None
    for text in re.findall(r"\\text\{([^{}]*)\}", s) + [re.sub(r"\\text\{[^{}]*\}|\\[A-Za-z]+", " ", s)]:
        if re.search(r"\d", s) and any(
            w.lower().replace("'", "") in MEANING_WORDS for w in re.findall(r"[A-Za-z']+", text)
        ):
            raise ParseError("words that change the answer")
    m = re.fullmatch(r"(.*?)\s*\\text\{([^{}]*)\}((?:\^\{?\d\}?)?)", s)
    if m and m.group(1) and re.search(r"[A-Za-z]", m.group(2)):
        s, unit = m.group(1), unit_name(m.group(2) + m.group(3))
    elif s.endswith("°") and not any(re.search(rf"\\?{f}(?![A-Za-z])", s) for f in TRIG):
        s, unit = s[:-1].strip(), "deg"
    else:
        m = re.fullmatch(r"(.*?[\d})])\s*([A-Za-z][A-Za-z ]*(?:/\s*[A-Za-z]+)?(?:\^\{?\d\}?)?)", s)
        if m:
            words = m.group(2).replace("/", " ").split()
            if all(w.lower() not in MATH_WORDS for w in words) and (
                any(len(w) >= 3 for w in words)
                or any(w.lower() in _UNIT2 for w in words)
                or (words[0] in ("m", "g", "s", "L", "h") and re.fullmatch(r"-?[\d.]+ [A-Za-z]", s))
            ):
                s, unit = m.group(1), unit_name(m.group(2))
    if s.endswith("%") and not pct:
        s, pct = s[:-1].strip(), True
    if _text_words(s):
        return Text(text_key(s))
    m = re.fullmatch(r"([0-9A-Za-z]+)_\{?\(?(\d{1,2})\)?\}?", s)
    if m and re.search(r"\d", m.group(1)) and 2 <= int(m.group(2)) <= 36:
        try:
            return Scalar(sympy.Integer(int(m.group(1), int(m.group(2)))), base=(m.group(1).lower(), int(m.group(2))))
        except ValueError:
            pass
    m = re.fullmatch(r"(-?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\s(\d+)/(\d+))", s)
    if m:
        whole = sympy.Integer(m.group(2))
        num, den = (m.group(3), m.group(4)) if m.group(3) else (m.group(5), m.group(6))
        if int(den) and int(num) < int(den):
            value = whole + sympy.Rational(int(num), int(den))
            return Scalar(-value if m.group(1) else value, unit=unit, pct=pct)
    dec = bool(re.search(r"\d\.\d|(?<!\d)\.\d|\d[eE][+-]?\d", s))
    return Scalar(to_sympy(s), dec=dec, pct=pct, unit=unit or None)


def text_key(s: str) -> str:
    """A text answer as compared: no LaTeX commands, lower case, single spaces."""
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\[A-Za-z]+", " ", s).lower()
    s = re.sub(r"[^a-z0-9+\-*/=.,() ]", " ", s)
    return re.sub(r"\s+", " ", s).strip(" .,")


def parse_matrix(s: str) -> Matrix:
    m = re.fullmatch(r"\\begin\{([a-zA-Z]*matrix|array)\}(\{[^{}]*\})?(.*)\\end\{\1\}", s, re.DOTALL)
    if not m:
        raise ParseError("bad matrix")
    rows = [r for r in m.group(3).split("\\\\") if r.strip()]
    cells = [[parse_scalar(clean(c)) for c in r.split("&")] for r in rows]
    if not cells or len({len(r) for r in cells}) != 1:
        raise ParseError("ragged matrix")
    return Matrix(cells)


_NAME = re.compile(r"[A-Za-z]{1,3}(?:_\{?[A-Za-z0-9]{1,3}\}?)?(?:\([^()=]{1,20}\))?")
_NAMES = re.compile(r"\((?:\s*[A-Za-z](?:_\{?\d\}?)?\s*,)+\s*[A-Za-z](?:_\{?\d\}?)?\s*\)")
_SUM_OF_NAMES = re.compile(r"[A-Za-z](?:\s*[-+*]?\s*[A-Za-z])+")  # m+n, ab, a+b+c: no coefficients
_CALL = re.compile(r"[A-Za-z]\([A-Za-z]\)")


def _relation(s: str, depth: int) -> Any:
    parts = split_top(s, _REL)
    if len(parts) == 1:
        return None
    ops = [m.group(0) for m in _REL.finditer(s)]
    if len(ops) != len(parts) - 1 or any(not p.strip() for p in parts):
        raise ParseError("bad relation")
    if all(op == "=" for op in ops):
        lhs, rhs = parts[0].strip(), parts[-1].strip()
        if len(parts) == 2 and _NAME.fullmatch(rhs) and not re.search(r"[A-Za-z]", lhs):
            lhs, rhs = rhs, lhs  # "5 = x"
        if _NAME.fullmatch(lhs) or _NAMES.fullmatch(lhs):  # x = 3, AB = 4, f(2) = -4, (p, q) = (3, 2)
            return Equation(re.sub(r"[{}\s]", "", lhs), None, parse(rhs, depth + 1))
        if len(parts) == 2 and _SUM_OF_NAMES.fullmatch(lhs) and not re.search(r"[A-Za-z]", rhs) and to_sympy(rhs) != 0:
            return Equation(re.sub(r"[{}\s]", "", lhs), None, parse(rhs, depth + 1))  # "m+n = 25": its value
        sides = [to_sympy(p) for p in parts]
        if not any(e.free_symbols for e in sides):  # "48 + 24 = 72": the value, if the chain is true
            if any(a != b and abs(complex(sympy.N(a - b, 50))) > 1e-40 for a, b in zip(sides, sides[1:], strict=False)):
                raise ParseError("a false equation")
            return parse(parts[-1], depth + 1)
        if len(parts) > 2:
            return parse(parts[-1], depth + 1)
        return Equation(None, sides[0], sides[1])
    ranged = False
    if len(parts) == 3 and _CALL.fullmatch(parts[1].strip()):  # "0 < f(x) < 1": the range of a value
        parts, ranged = [parts[0], "y", parts[2]], True
    exprs = [to_sympy(p) for p in parts]
    free = set().union(*[e.free_symbols for e in exprs])
    if len(free) != 1:
        raise ParseError("inequality needs exactly one variable")
    var = free.pop()
    region = sympy.S.Reals
    ops_map = {"<": sympy.Lt, ">": sympy.Gt, "\\lt": sympy.Lt, "\\gt": sympy.Gt, "\\le": sympy.Le, "<=": sympy.Le,
               "\\ge": sympy.Ge, ">=": sympy.Ge, "=": sympy.Eq, "\\ne": sympy.Ne, "!=": sympy.Ne}  # fmt: skip
    for a, op, b in zip(exprs, ops, exprs[1:], strict=False):
        rel = ops_map[op](a, b)
        if rel is sympy.true or rel is sympy.false:
            raise ParseError("constant inequality")
        region = sympy.Intersection(region, _solve(rel, var))
    # "x \ne 2" is how the set R minus {2} is written, and "0 < f(x) < 1" states a range: both are
    # the set itself, accepted where an interval is the gold (a plain "x > 2" is not: see verifiers.math)
    return SetVal(region, not (ranged or ops == ["\\ne"] or ops == ["!="]))


def _solve(rel: Any, var: Any) -> Any:
    """The real solutions of one relation; ``x op number`` directly, else by solveset."""
    lhs, rhs, kind = rel.lhs, rel.rhs, type(rel)
    if rhs == var and not lhs.free_symbols:  # "2 < x" is "x > 2"
        lhs, rhs, kind = rhs, lhs, rel.reversed.func
    if lhs == var and not rhs.free_symbols and rhs.is_real:
        simple = {
            sympy.StrictLessThan: sympy.Interval.open(-sympy.oo, rhs),
            sympy.LessThan: sympy.Interval(-sympy.oo, rhs, True, False),
            sympy.StrictGreaterThan: sympy.Interval.open(rhs, sympy.oo),
            sympy.GreaterThan: sympy.Interval(rhs, sympy.oo, False, True),
            sympy.Equality: sympy.FiniteSet(rhs),
            sympy.Unequality: sympy.Union(sympy.Interval.open(-sympy.oo, rhs), sympy.Interval.open(rhs, sympy.oo)),
        }
        if kind in simple:
            return simple[kind]
    return sympy.solveset(rel, var, sympy.S.Reals)


def as_number(node: Any) -> Any:
    if isinstance(node, Scalar) and not node.value.free_symbols:
        return node.value
    raise ParseError("interval endpoint is not a number")


def as_set(node: Any) -> SetVal:
    if isinstance(node, SetVal):
        return node
    if isinstance(node, Seq) and node.kind == "tuple" and len(node.items) == 2:
        return SetVal(sympy.Interval.open(as_number(node.items[0]), as_number(node.items[1])), False)
    if isinstance(node, Seq) and node.kind == "set":
        return SetVal(sympy.FiniteSet(*[as_number(n) for n in node.items]), False)
    if isinstance(node, Scalar):
        return SetVal(sympy.FiniteSet(as_number(node)), False)
    raise ParseError("not a set")
