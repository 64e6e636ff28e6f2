"""Equivalence of parsed answers: the conventions documented in ``verifiers.math``.

Runs only inside a worker process (``verifiers._math.worker``), like the parser it
builds on (``verifiers._math.parse``).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from fractions import Fraction
from typing import Any

import sympy

from verifiers._math.latex import ParseError
from verifiers._math.parse import (
    Choice,
    ChoiceValue,
    Equation,
    Matrix,
    Scalar,
    Seq,
    SetVal,
    Text,
    as_set,
    parse,
    text_key,
)
from verifiers._math.text import decimal_match, prepare


def _fraction(v: Any) -> Fraction:
    """A real sympy number as a Fraction, exact for rationals, else to 40+ significant digits."""
    if isinstance(v, sympy.Rational):
        return Fraction(int(v.p), int(v.q))
    digits = 40
    mag = sympy.N(sympy.Abs(v), 15)
    if mag.is_finite and mag > 1:
        digits += int(sympy.log(mag, 10).evalf(5)) + 1
    f = sympy.N(v, digits)
    if not f.is_real:
        raise ValueError("not real")
    return Fraction(str(f))


def numbers_equal(g: Any, p: Any, p_dec: bool) -> bool:
    """Exact equality, or 6-decimal agreement when the prediction is a decimal."""
    if g.has(sympy.oo, -sympy.oo) or p.has(sympy.oo, -sympy.oo):
        return g == p
    if p_dec:
        (gr, gi), (pr, pi_) = g.as_real_imag(), p.as_real_imag()
        return decimal_match(_fraction(gr), _fraction(pr)) and decimal_match(_fraction(gi), _fraction(pi_))
    if isinstance(g, sympy.Rational) and isinstance(p, sympy.Rational):
        return g == p
    d = g - p
    if d == 0:
        return True
    scale = max(1, abs(complex(sympy.N(g, 20))))
    return abs(complex(sympy.N(d, 80))) < 1e-50 * scale


def expr_equal(a: Any, b: Any) -> bool:
    """Symbolic equality, decided exactly where sympy can and at unpredictable points where it cannot.

    Equal when the difference expands to 0. Otherwise it is evaluated at five
    points drawn afresh for every call from ``os.urandom`` (rationals with large
    random denominators), so no response can aim a term to vanish where it is
    checked (``\\sin(97\\pi x)`` vanishes at every fixed grid of ninety-sevenths).
    Any point where it does not vanish (at 40 digits) decides "not equal"; five
    unpredictable points where it vanishes are taken as equal.
    """
    d = a - b
    if d == 0 or sympy.expand(d) == 0:
        return True
    syms = sorted(d.free_symbols, key=str)
    if not syms:
        return numbers_equal(a, b, False)
    rng = random.Random(os.urandom(16))
    for _ in range(5):
        point = {x: sympy.Rational(rng.randint(-(10**7), 10**7), rng.randint(10**6, 10**7)) for x in syms}
        try:
            val = complex(sympy.N(d.subs(point), 40))
            ref = abs(complex(sympy.N(a.subs(point), 20))) + 1
        except (TypeError, ValueError):
            return False
        if abs(val) > 1e-25 * ref:
            return False
    return True


def scalar_equal(g: Scalar, p: Scalar) -> bool:
    """Units, base subscripts, percent, then the number or expression itself."""
    if (g.unit == "deg") != (p.unit == "deg") and not (g.unit and p.unit):
        deg, rad = (g, p) if g.unit == "deg" else (p, g)
        if rad.value.has(sympy.pi) and not rad.value.free_symbols:  # 60° for pi/3, and back
            return numbers_equal(rad.value, deg.value * sympy.pi / 180, False)
    if g.unit and p.unit and g.unit != p.unit:
        return False
    if g.base or p.base:
        if g.base and p.base:
            return g.value == p.value
        digits = (g.base or p.base)[0]
        other = p if g.base else g
        return bool(re.fullmatch(r"\d+", digits)) and other.value == sympy.Integer(digits)
    gv, pv = g.value, p.value
    if gv.free_symbols or pv.free_symbols:
        return g.pct == p.pct and expr_equal(gv, pv)
    gs = [gv] + ([gv / 100] if g.pct and not p.pct else [])
    ps = [pv] + ([pv / 100] if p.pct and not g.pct else [])
    return any(numbers_equal(a, b, p.dec) for a in gs for b in ps)


def reduce(node: Any) -> Any:
    """Drop variable names (x = 3 -> 3; x=1, y=2 -> (1, 2)) and one-item lists."""
    if isinstance(node, Equation) and node.var:
        return reduce(node.rhs)
    if isinstance(node, Seq) and node.kind == "list":
        if len(node.items) == 1:
            return reduce(node.items[0])
        eqs = [n for n in node.items if isinstance(n, Equation) and n.var]
        names = [e.var for e in eqs]
        if len(eqs) == len(node.items) and len(set(names)) == len(names):
            return Seq("tuple", [reduce(e.rhs) for e in sorted(eqs, key=lambda e: e.var)])
        return Seq("list", [reduce(n) for n in node.items])
    return node


def equal(g: Any, p: Any) -> bool:
    """Does the parsed response ``p`` answer the parsed gold ``g``? (The conventions, by gold type.)"""
    if isinstance(g, Equation) and g.var is None and isinstance(p, Equation) and p.var and _plain(p.var):
        p = Equation(None, sympy.Symbol(p.var), _expr(p.rhs))  # "y = 2x + 3" against "2x - y + 3 = 0"
    g, p = reduce(g), reduce(p)
    if isinstance(g, ChoiceValue):  # "(C) 12": the letter, or the value it stands for
        if isinstance(p, (Choice, ChoiceValue)):
            return g.letter == p.letter
        return equal(g.value, p)
    if isinstance(p, ChoiceValue):
        return isinstance(g, Choice) and g.letter == p.letter
    if isinstance(g, Choice):
        if isinstance(p, Choice):
            return g.letter == p.letter
        if isinstance(p, Scalar) and isinstance(p.value, sympy.Symbol):
            return str(p.value).upper() == g.letter
        return isinstance(p, Text) and p.text.upper() == g.letter
    if isinstance(g, Text):
        if isinstance(p, Choice):
            return g.text.upper() == p.letter
        return isinstance(p, Text) and g.text == p.text
    if isinstance(g, Scalar):
        if isinstance(p, Choice) and isinstance(g.value, sympy.Symbol):
            return str(g.value).upper() == p.letter
        return isinstance(p, Scalar) and scalar_equal(g, p)
    if isinstance(g, Seq):
        if isinstance(p, Matrix):
            p = _vector(p)
        if isinstance(p, SetVal) and not p.from_ineq and g.kind == "tuple" and len(g.items) == 2:
            return equal(as_set(g), p)  # (0, 1) as an open interval, for a stated range
        if not isinstance(p, Seq):
            return False
        if g.kind == "tuple":
            return p.kind != "set" and len(g.items) == len(p.items) and all(map(equal, g.items, p.items))
        return all(any(equal(a, b) for b in p.items) for a in g.items) and all(
            any(equal(a, b) for a in g.items) for b in p.items
        )
    if isinstance(g, SetVal):
        if not g.from_ineq and isinstance(p, SetVal) and p.from_ineq:
            return False
        try:
            ps = as_set(p)
        except ParseError:
            return False
        return (
            sympy.Complement(g.value, ps.value) == sympy.EmptySet
            and sympy.Complement(ps.value, g.value) == sympy.EmptySet
        )
    if isinstance(g, Matrix):
        if isinstance(p, Seq):
            gv = _vector(g)
            return gv is not None and equal(gv, p)
        if not isinstance(p, Matrix) or len(g.rows) != len(p.rows) or len(g.rows[0]) != len(p.rows[0]):
            return False
        return all(equal(a, b) for ra, rb in zip(g.rows, p.rows, strict=True) for a, b in zip(ra, rb, strict=True))
    if isinstance(g, Equation):
        if not isinstance(p, Equation) or p.var:
            return False
        dg, dp = g.lhs - g.rhs, p.lhs - p.rhs
        if dp == 0:
            return False
        ratio = sympy.cancel(dg / dp)  # polynomials: exact and fast
        if not ratio.is_number and _varies(ratio):
            return False  # not a constant multiple: decided without simplify
        if not ratio.is_number:
            ratio = sympy.simplify(ratio)
        return bool(ratio.is_number and ratio != 0)
    return False


def _varies(expr: Any) -> bool:
    """True when ``expr`` takes two different values at two unpredictable points."""
    rng = random.Random(os.urandom(16))
    syms = sorted(expr.free_symbols, key=str)
    values = []
    for _ in range(2):
        point = {x: sympy.Rational(rng.randint(-(10**7), 10**7), rng.randint(10**6, 10**7)) for x in syms}
        try:
            values.append(complex(sympy.N(expr.subs(point), 30)))
        except (TypeError, ValueError, ZeroDivisionError):
            return False
    return abs(values[0] - values[1]) > 1e-20 * (abs(values[0]) + 1)


def _plain(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z](?:_[A-Za-z0-9]{1,3})?", name))


def _expr(node: Any) -> Any:
    if isinstance(node, Scalar) and not node.unit and not node.pct:
        return node.value
    raise ParseError("not an expression")


def _vector(m: Matrix) -> Any:
    if len(m.rows) == 1:
        return Seq("tuple", list(m.rows[0]))
    if all(len(r) == 1 for r in m.rows):
        return Seq("tuple", [r[0] for r in m.rows])
    return None


def judge(candidates: list[str], gold: str) -> tuple[str, str]:
    """(status, detail) for answer candidates against a gold answer, both already extracted."""
    try:
        g = parse(gold)
    except (ParseError, RecursionError, TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        return "skip", f"unparseable gold {gold[:60]!r} ({exc})"[:200]
    verdicts = []
    for cand in candidates:
        if re.fullmatch(r"[A-Za-z]{2,}", cand) and re.fullmatch(r"[A-Za-z]{2,}", gold):
            verdicts.append(cand.lower() == gold.lower())  # "no" vs "on": words, not products
            continue
        try:
            p = parse(cand)
        except (ParseError, TypeError, ValueError, AttributeError, NotImplementedError):
            verdicts.append(isinstance(g, Text) and text_key(cand) == g.text)
            continue
        try:
            ok = equal(g, p)
            rp = reduce(p)
            several = isinstance(rp, Seq) and rp.kind == "list" and not isinstance(reduce(g), Seq)
            if not ok and several and any(equal(g, item) for item in rp.items):
                return "fail", "hedging: several different answers, one of them right"
        except (ArithmeticError, TypeError, ValueError, AttributeError, NotImplementedError) as exc:
            return "fail", f"could not compare ({type(exc).__name__})"
        verdicts.append(ok)
    if len(verdicts) > 1 and any(verdicts) and not all(verdicts):
        return "fail", f"hedging: {len(candidates)} different final answers"
    if verdicts and all(verdicts):
        return "pass", "equivalent"
    return "fail", "not equivalent"


def judge_pair(response: object, reference: object, fallback_last_number: bool = True) -> tuple[str, str, str | None]:
    """The whole pipeline for one pair, as run by a worker for ``verify_batch``."""
    step = prepare(response, reference, fallback_last_number)
    if step[0] == "done":
        return step[1], step[2], step[3]
    status, detail = judge(step[1], step[2])
    return status, detail, step[3]


#: Pairs the zygote judges once at start, so every forked worker begins with
#: sympy's internal caches warm (none of these are in the benchmark set).
WARM_UP = [
    (r"\frac{14}{21}", r"\dfrac{2}{3}"),
    (r"3\sqrt{12}", r"6\sqrt3"),
    (r"0.1428571", r"\frac17"),
    (r"(3x+1)^2", r"9x^2+6x+1"),
    (r"\{5, -5\}", r"\pm 5"),
    (r"(-3, 7]", r"-3 < y \le 7"),
    (r"\begin{pmatrix}2&0\\0&2\end{pmatrix}", r"\begin{bmatrix}2&0\\0&2\end{bmatrix}"),
    (r"\cos 60^\circ + i", r"0.5+i"),
    (r"45\%", r"0.45"),
    (r"12\text{ kg}", r"12"),
    (r"y=7, z=-1", r"(7,-1)"),
    (r"\ln 27", r"3\ln 3"),
    (r"4.5 \times 10^{-3}", r"0.0045"),
    (r"\text{Thursday}", r"thursday"),
]


def warm_up() -> None:
    """Judge WARM_UP once (errors ignored) and forget the parsed strings."""
    for response, gold in WARM_UP:
        with contextlib.suppress(Exception):
            judge_pair(f"We get $x$, so the answer is $\\boxed{{{response}}}$.", gold)
    parse.cache_clear()
