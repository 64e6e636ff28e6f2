"""Plain numbers without sympy: numerals and fractions as exact rationals, and the
decimal and percent conventions of ``verifiers.math`` on them.
"""

from __future__ import annotations

import re
from fractions import Fraction

_SIMPLE = re.compile(r"([-+]?)(\d+)?(?:\.(\d+))?(%?)")
_SIMPLE_FRAC = re.compile(r"([-+]?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))")


def simple_number(s: str) -> tuple[Fraction, bool, bool] | None:
    """(value, is_decimal, has_percent) for a plain numeral or fraction, else None."""
    m = _SIMPLE.fullmatch(s)
    if m and (m.group(2) or m.group(3)) and len(s) < 60:
        whole = int(m.group(2) or 0)
        frac = m.group(3) or ""
        value = Fraction(whole) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        if m.group(1) == "-":
            value = -value
        return value, bool(frac) or ("." in s), bool(m.group(4))
    m = _SIMPLE_FRAC.fullmatch(s)
    if m and len(s) < 60:
        num, den = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return (-value if m.group(1) == "-" else value), False, False
    return None


def _round(x: Fraction, places: int) -> int:
    return int((x * 10**places + Fraction(1, 2)) // 1)


def decimal_match(gold: Fraction, pred: Fraction) -> bool:
    """Agree when rounded to 6 decimal places; below 1e-4 in size, to 6 significant digits."""
    if gold != 0 and abs(gold) < Fraction(1, 10_000):
        places = 5
        mag = abs(gold)
        while mag < 1:
            mag *= 10
            places += 1
        return _round(gold, places) == _round(pred, places)
    return _round(gold, 6) == _round(pred, 6)


def numbers_match(g: Fraction, g_dec: bool, g_pct: bool, p: Fraction, p_dec: bool, p_pct: bool) -> bool:
    """The number conventions (decimal rounding, percent as a unit) on exact rationals."""

    def eq(gv: Fraction, pv: Fraction) -> bool:
        return decimal_match(gv, pv) if p_dec else gv == pv

    if g_pct == p_pct:
        return eq(g, p)
    if g_pct:
        return eq(g, p) or eq(g / 100, p)
    return eq(g, p) or eq(g, p / 100)
