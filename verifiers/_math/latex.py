"""LaTeX (or plain text) expressions to sympy, through a converter we control.

One expression at a time: no relations, lists, units or percent signs (the
structure parser in ``verifiers._math.parse`` splits those off first). The
converter walks the cleaned LaTeX and emits a Python expression string made
only of numbers, operators, parentheses, single-letter symbols and a whitelist
of function names; the string is checked against that whitelist before
``sympy.parse_expr`` sees it, with empty builtins, so model text is never
evaluated as Python. Decimals become exact rationals. Runs in a worker process
(``verifiers._math.worker``): sympy may take unbounded time on hostile input.
"""

from __future__ import annotations

import re
from typing import Any

import sympy
from sympy.parsing.sympy_parser import auto_number, auto_symbol, factorial_notation, parse_expr, rationalize

from verifiers._math.text import braces_balanced, match_brace


class ParseError(ValueError):
    pass


FUNCS = {
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
    "tanh": "tanh", "log": "log", "ln": "log", "exp": "exp", "lg": "log10",
}  # fmt: skip
TRIG = {"sin", "cos", "tan", "cot", "sec", "csc"}
CONSTS = {"pi": " pi ", "infty": " oo ", "infinity": " oo ", "inf": " oo "}
MATH_WORDS = set(FUNCS) | set(CONSTS) | {"sqrt", "frac", "text", "or", "and", "oo", "pm", "mp", "cup", "cap"}


def _nroot(a: Any, n: Any) -> Any:
    if a.is_number and a.is_negative and n.is_integer and n % 2 == 1:
        return -sympy.root(-a, n)
    return sympy.root(a, n)


LOCALS: dict[str, Any] = {
    "pi": sympy.pi, "oo": sympy.oo, "ImagI": sympy.I, "EulerE": sympy.E, "sqrt": sympy.sqrt,
    "nroot": _nroot, "binomial": sympy.binomial, "floor": sympy.floor, "ceiling": sympy.ceiling,
    "Abs": sympy.Abs, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
    "sec": sympy.sec, "csc": sympy.csc, "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "log": sympy.log, "exp": sympy.exp,
    "log10": lambda x: sympy.log(x, 10),
}  # fmt: skip
GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "Integer": sympy.Integer,
    "Float": sympy.Float,
    "Rational": sympy.Rational,
    "Symbol": sympy.Symbol,
    "Function": sympy.Function,
    "factorial": sympy.factorial,
    "factorial2": sympy.factorial2,
}
TRANSFORMS = (auto_symbol, auto_number, rationalize, factorial_notation)
_SAFE = re.compile(r"[\w\s+\-*/().,!]*")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_NUM = re.compile(r"\d+(?:\.\d*)?|\.\d+")


class _Conv:
    """One pass over cleaned LaTeX, emitting a Python expression string."""

    def __init__(self, s: str, imag: str | None, degrees: bool):
        self.s, self.i, self.out = s, 0, []
        self.imag, self.degrees = imag, degrees
        self.abs_open = False

    def run(self) -> str:
        self.seq(len(self.s))
        return "".join(self.out)

    def emit_operand(self, text: str) -> None:
        # explicit multiplication between adjacent operands: "2x", "x(y)", ")(" ...
        prev = "".join(self.out[-3:]).rstrip()
        if prev and (prev[-1].isalnum() or prev[-1] in ")!_"):
            self.out.append("*")
        self.out.append(text)

    def group(self) -> str:
        """The next argument: {...}, a command with its arguments, or one character."""
        s = self.s
        while self.i < len(s) and s[self.i] == " ":
            self.i += 1
        if self.i >= len(s):
            raise ParseError("missing argument")
        if s[self.i] == "{":
            end = match_brace(s, self.i)
            if end < 0:
                raise ParseError("unbalanced braces")
            inner = _Conv(s[self.i + 1 : end], self.imag, self.degrees).run()
            self.i = end + 1
            return "(" + inner + ")"
        if s[self.i] == "\\":
            sub = _Conv(s, self.imag, self.degrees)
            sub.i = self.i
            sub.command()
            self.i = sub.i
            return "(" + "".join(sub.out) + ")"
        self.i += 1
        return "(" + _Conv(s[self.i - 1], self.imag, self.degrees).run() + ")"

    def func_arg(self) -> str:
        s = self.s
        while self.i < len(s) and s[self.i] == " ":
            self.i += 1
        if self.i < len(s) and s[self.i] in "({[":
            close = {"(": ")", "{": "}", "[": "]"}[s[self.i]]
            depth, j = 0, self.i
            while j < len(s):
                if s[j] == s[self.i]:
                    depth += 1
                elif s[j] == close:
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = s[self.i + 1 : j]
            self.i = j + 1
            return "(" + _Conv(inner, self.imag, self.degrees).run() + ")"
        if self.i < len(s) and s[self.i] == "\\":
            return self.group()
        m = re.compile(r"-?(?:\d+(?:\.\d+)?)?(?:[A-Za-z](?![A-Za-z]))?°?").match(s, self.i)
        if not m or not m.group(0):
            raise ParseError("function without argument")
        self.i = m.end()
        return "(" + _Conv(m.group(0), self.imag, self.degrees).run() + ")"

    def function(self, name: str) -> None:
        s = self.s
        power = base = None
        for _ in range(2):
            if s.startswith("^", self.i):
                self.i += 1
                power = self.group()
            elif s.startswith("_", self.i) and name == "log":
                self.i += 1
                base = self.group()
        arg = self.func_arg()
        call = f"log({arg},{base})" if base else f"{name}({arg})"
        self.emit_operand(f"({call}**{power})" if power else call)

    def command(self) -> None:
        s = self.s
        m = re.compile(r"\\([A-Za-z]+|.)").match(s, self.i)
        if not m:
            raise ParseError("dangling backslash")
        name = m.group(1)
        self.i = m.end()
        if name == "frac":
            a, b = self.group(), self.group()
            self.emit_operand(f"({a}/{b})")
        elif name == "sqrt":
            if s.startswith("[", self.i):
                end = s.find("]", self.i)
                if end < 0:
                    raise ParseError("bad root index")
                n = _Conv(s[self.i + 1 : end], self.imag, self.degrees).run()
                self.i = end + 1
                self.emit_operand(f"nroot({self.group()},({n}))")
            else:
                self.emit_operand(f"sqrt({self.group()})")
        elif name == "binom":
            a, b = self.group(), self.group()
            self.emit_operand(f"binomial({a},{b})")
        elif name in FUNCS:
            self.function(FUNCS[name])
        elif name in CONSTS:
            self.emit_operand(CONSTS[name])
        elif name in ("cdot", "times", "ast"):
            self.out.append("*")
        elif name == "div":
            self.out.append("/")
        elif name in ("lfloor", "lceil"):
            self.emit_operand("floor(" if name == "lfloor" else "ceiling(")
        elif name in ("rfloor", "rceil"):
            self.out.append(")")
        elif name in ("{", "}"):
            self.emit_operand("(") if name == "{" else self.out.append(")")
        elif name in ("mathbb", "mathcal", "mathit", "text"):
            inner = self.group()
            if name == "text" and re.search(r"[A-Za-z]{2,}", inner):
                raise ParseError("text inside an expression")
            self.emit_operand(inner)
        elif name in (" ", ","):
            pass
        else:
            raise ParseError(f"unsupported command \\{name}")

    def seq(self, stop: int) -> None:
        s = self.s
        while self.i < min(stop, len(s)):
            ch = s[self.i]
            if ch == " ":
                self.i += 1
            elif ch.isdigit() or (ch == "." and self.i + 1 < len(s) and s[self.i + 1].isdigit()):
                m = _NUM.match(s, self.i)
                self.i = m.end()
                num = m.group(0).rstrip(".")
                e = re.compile(r"[eE]([+-]?\d+)(?![A-Za-z])").match(s, self.i)
                if e:
                    self.i = e.end()
                    num = f"({num}*10**({int(e.group(1))}))"
                self.emit_operand(num)
            elif ch.isalpha():
                m = re.compile(r"[A-Za-z]+").match(s, self.i)
                word = m.group(0)
                self.i = m.end()
                if word in FUNCS or word == "sqrt":
                    if word == "sqrt":
                        self.emit_operand(f"sqrt{self.func_arg()}")
                    else:
                        self.function(FUNCS[word])
                elif word in CONSTS:
                    self.emit_operand(CONSTS[word])
                elif len(word) > 2:
                    raise ParseError(f"word {word!r} in an expression")
                else:
                    for k, letter in enumerate(word):
                        name = letter
                        if letter == self.imag:
                            name = "ImagI"
                        elif letter == "e":
                            name = "EulerE"
                        if k == len(word) - 1 and s.startswith("_", self.i):
                            sub = re.compile(r"_\{?([A-Za-z0-9]{1,3})\}?").match(s, self.i)
                            if sub:
                                name = f"{letter}_{sub.group(1)}"
                                self.i = sub.end()
                        self.emit_operand(f" {name} ")
            elif ch == "\\":
                self.command()
            elif ch in "{[(":
                self.i += 1
                self.emit_operand("(")
            elif ch in "}])":
                self.i += 1
                self.out.append(")")
            elif ch == "^":
                self.i += 1
                m = re.compile(r"\s*(-?\d+)").match(s, self.i)
                if m and not s.startswith("{", self.i):
                    self.i = m.end()
                    self.out.append(f"**({m.group(1)})")
                else:
                    self.out.append("**" + self.group())
            elif ch == "|":
                self.i += 1
                if self.abs_open:
                    self.out.append(")")
                else:
                    self.emit_operand("Abs(")
                self.abs_open = not self.abs_open
            elif ch == "°":
                self.i += 1
                if not self.degrees:
                    raise ParseError("degree sign outside a trig function")
                self.out.append("*(pi/180)")
            elif ch in "+-*/!":
                self.i += 1
                self.out.append(ch)
            else:
                raise ParseError(f"unexpected {ch!r}")


def to_sympy(s: str) -> Any:
    """Parse one cleaned LaTeX/plain expression (no relations, lists or units) to sympy."""
    if not s or not braces_balanced(s):
        raise ParseError("empty or unbalanced")
    letters = set(re.findall(r"(?<![A-Za-z\\])[A-Za-z](?![A-Za-z])", s))
    imag = "i" if "i" in letters else ("j" if "j" in letters else None)
    degrees = any(re.search(rf"(?:\\|\b){f}(?![A-Za-z])", s) for f in TRIG)
    code = _Conv(s, imag, degrees).run()
    if not _SAFE.fullmatch(code) or "__" in code:
        raise ParseError("unsafe expression")
    for ident in _IDENT.findall(code):
        if len(ident) > 1 and ident not in LOCALS and not re.fullmatch(r"[A-Za-z]_[A-Za-z0-9]{1,3}", ident):
            raise ParseError(f"unknown name {ident}")
    try:
        value = parse_expr(code, local_dict=dict(LOCALS), global_dict=dict(GLOBALS), transformations=TRANSFORMS)
    except (SyntaxError, TypeError, AttributeError, ValueError, ZeroDivisionError) as exc:
        raise ParseError(f"cannot parse: {exc}") from None
    if not isinstance(value, sympy.Expr):
        raise ParseError("not an expression")
    if value.has(sympy.zoo, sympy.nan):
        raise ParseError("undefined value")
    return value
