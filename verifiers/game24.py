"""Game24 (GeneralPoints): make 24 from four playing cards with + - × ÷.

Each card is used exactly once. A counts 1, 2-10 their face value, and J, Q, K
depend on the *rule*: ``"ten"`` makes them all 10, ``"rank"`` makes them 11, 12
and 13. Training on one rule and testing on the other is a clean
out-of-distribution check (KNOWLEDGE.md section 6: SFT memorises the rule, RL
learns the arithmetic)::

    train = generate_puzzles(2000, rule="ten", seed=0)
    test = generate_puzzles(200, rule="rank", seed=1)

What the verifier accepts, and why it is strict:

- The expression is the last ``<answer>...</answer>`` block, else the last
  arithmetic expression in the text. ``×``, ``÷``, ``−``, LaTeX ``\\times``,
  ``\\div`` and ``\\cdot`` are read as ``*``, ``/``, ``-``; a trailing ``= 24``
  (the target) is allowed.
- Only integers, ``+ - * /`` and parentheses. No unary minus (``-3``), no
  exponent, no digit concatenation (``(1 0)``, or two cards read as ``11``
  fails the card count), no implicit multiplication.
- The numbers used must be exactly the cards' values, as a multiset.
- Arithmetic is exact (``fractions.Fraction``): ``8 / (3 - 8/3)`` is 24.
  Division by zero fails cleanly.
- Model text is never ``eval``-ed: a tokenizer and a recursive-descent parser
  read it, with a cap on length and token count so nothing can hang.

The reference is the puzzle: ``{"cards": ["A", "7", "J", "K"], "rule": "ten"}``
(``rule`` defaults to the verifier's; ``target`` may be given too), the same as
a JSON string, or a plain list of cards. A reference that names no usable
puzzle makes the row ungradable (``skip``).

>>> v = Game24Verifier()
>>> v.verify("<answer>(K + 2) × 2 × 1 = 24</answer>", {"cards": ["K", "2", "2", "A"]}).reason
"fail: card 'K' in the expression: write its value as a number"
>>> v.verify("<answer>(10 + 2) × 2 × 1 = 24</answer>", {"cards": ["K", "2", "2", "A"]}).reason
'pass: (10 + 2) * 2 * 1 = 24'
>>> v.verify("(10 + 2) × 2 × 1", {"cards": ["K", "2", "2", "A"], "rule": "rank"}).reason
'fail: wrong numbers: used [1, 2, 2, 10], the cards give [1, 2, 2, 13]'
>>> solve([13, 2, 2, 1])
'13 * 2 - 2 * 1'
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from itertools import combinations
from typing import Any, Union

from verifiers.base import BatchedVerifier, Verdict, failed, passed, skipped, tag_contents

#: Face values of J, Q, K under each rule. A is always 1.
RULES: dict[str, dict[str, int]] = {
    "ten": {"J": 10, "Q": 10, "K": 10},
    "rank": {"J": 11, "Q": 12, "K": 13},
}
CARDS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")

MAX_RESPONSE_CHARS = 200_000
MAX_EXPRESSION_CHARS = 200
MAX_TOKENS = 64

# Parse tree: an int leaf, or (op, left, right).
Node = Union[int, tuple[str, "Node", "Node"]]  # noqa: UP007 (a runtime alias; | needs 3.12 here)


class ExpressionError(ValueError):
    """The text is not an allowed Game24 expression."""


def card_values(cards: Sequence[str | int], rule: str = "ten") -> list[int]:
    """Numeric values of cards under a face rule.

    Args:
        cards: Card names (``"A"``, ``"2"``..``"10"``, ``"J"``, ``"Q"``, ``"K"``,
            any case) or the integers 1-10.
        rule: ``"ten"`` (J=Q=K=10) or ``"rank"`` (J=11, Q=12, K=13).

    Raises:
        ValueError: An unknown rule or card.

    >>> card_values(["A", "7", "J", "K"], "ten"), card_values(["A", "7", "J", "K"], "rank")
    ([1, 7, 10, 10], [1, 7, 11, 13])
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {sorted(RULES)}")
    values = []
    for card in cards:
        if isinstance(card, int) and not isinstance(card, bool) and 1 <= card <= 10:
            values.append(card)
            continue
        name = str(card).strip().upper()
        if name in ("A", "ACE", "1"):
            values.append(1)
        elif name in RULES[rule]:
            values.append(RULES[rule][name])
        elif name in CARDS:
            values.append(int(name))
        else:
            raise ValueError(f"unknown card {card!r}")
    return values


# --------------------------------------------------------------------------- reading the expression

_SYMBOLS = {"×": "*", "÷": "/", "−": "-", r"\times": "*", r"\div": "/", r"\cdot": "*", r"\left": "", r"\right": ""}
_CANDIDATE = re.compile(r"[0-9 \t()+\-*/^=]+")
_TRAILING_EQUALS = re.compile(r"^(.*?)=\s*(\d+)\s*$", re.DOTALL)


def extract_expression(response: str) -> str | None:
    """The last arithmetic expression: inside the last ``<answer>`` if any.

    An expression is a run of digits, operators, parentheses and spaces that
    holds at least two numbers and one operator. Symbols are normalised to
    ``+ - * /``.

    >>> extract_expression("First 10 - 4 = 6, so (10 - 4) × (13 - 9) = 24.")
    '(10 - 4) * (13 - 9) = 24'
    """
    tagged = tag_contents(response)  # linear: a regex here was quadratic on "<answer>" * n
    text = tagged[-1] if tagged else response
    for symbol, ascii_op in _SYMBOLS.items():
        text = text.replace(symbol, ascii_op)
    if tagged:
        # The tag should hold just the expression: read it whole, so that card
        # letters or stray symbols are reported, unless it is prose.
        whole = re.sub(r"\\[()\[\]]|\$", " ", text).strip().rstrip(".").strip()
        if whole and not re.search(r"[^\W\d_]", re.sub(r"\b[AJQK]\b", "", whole)):
            return whole
    found = None
    for m in _CANDIDATE.finditer(text):
        chunk = m.group(0).strip().lstrip(")").rstrip("(=").strip()
        if len(re.findall(r"\d+", chunk)) >= 2 and re.search(r"[-+*/^]", chunk):
            found = chunk
    return found


def tokenize(expression: str) -> list[str]:
    """Split an expression into integer and operator tokens.

    Raises:
        ExpressionError: Characters outside ``0-9 + - * / ( )``, an exponent,
            a zero-padded number, or too many tokens.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression too long ({len(expression)} chars > {MAX_EXPRESSION_CHARS})")
    tokens: list[str] = []
    i = 0
    while i < len(expression):
        ch = expression[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(expression) and expression[j].isdigit():
                j += 1
            number = expression[i:j]
            if len(number) > 1 and number[0] == "0":
                raise ExpressionError(f"zero-padded number {number!r}")
            tokens.append(number)
            i = j
        elif expression.startswith("**", i) or ch == "^":
            raise ExpressionError("exponent not allowed")
        elif ch in "AJQK":
            raise ExpressionError(f"card {ch!r} in the expression: write its value as a number")
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        else:
            raise ExpressionError(f"unexpected character in expression: {ch}")
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"expression too long (more than {MAX_TOKENS} tokens)")
    return tokens


class _Parser:
    """Recursive descent over: expr = term (('+'|'-') term)*; term = factor (('*'|'/') factor)*;
    factor = INT | '(' expr ')'. Depth is bounded by ``MAX_TOKENS``."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.expr()
        if self.peek() is not None:
            raise self.unexpected()
        return node

    def unexpected(self) -> ExpressionError:
        """The error for a token where an operator, ')' or the end was expected."""
        tok = self.peek()
        if tok is None:
            return ExpressionError("unbalanced parentheses: missing ')'")
        if tok == ")":
            return ExpressionError("unbalanced parentheses: unexpected ')'")
        prev = self.tokens[self.pos - 1]
        if prev.isdigit() and tok.isdigit():
            return ExpressionError(f"digit concatenation not allowed ({prev!r} then {tok!r})")
        return ExpressionError(f"missing operator before {tok!r} (no implicit multiplication)")

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = (op, node, self.term())  # type: ignore[assignment]
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = (op, node, self.factor())  # type: ignore[assignment]
        return node

    def factor(self) -> Node:
        tok = self.take()
        if tok is None:
            raise ExpressionError("expression ends early")
        if tok.isdigit():
            return int(tok)
        if tok == "(":
            node = self.expr()
            if self.peek() != ")":
                raise self.unexpected()
            self.pos += 1
            return node
        if tok in ("-", "+"):
            raise ExpressionError(f"unary {'minus' if tok == '-' else 'plus'} not allowed")
        raise ExpressionError(f"unexpected {tok!r}")


def parse(expression: str) -> Node:
    """Parse an expression into a tree of ints and ``(op, left, right)`` tuples.

    >>> parse("8 / (3 - 8 / 3)")
    ('/', 8, ('-', 3, ('/', 8, 3)))
    """
    return _Parser(tokenize(expression)).parse()


def leaves(node: Node) -> list[int]:
    """The numbers a parse tree uses, left to right."""
    if isinstance(node, int):
        return [node]
    return leaves(node[1]) + leaves(node[2])


def evaluate(node: Node) -> Fraction:
    """Exact value of a parse tree. Raises ``ZeroDivisionError`` on division by zero."""
    if isinstance(node, int):
        return Fraction(node)
    op, left, right = node
    a, b = evaluate(left), evaluate(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


# --------------------------------------------------------------------------- solving and generating


@functools.lru_cache(maxsize=8192)
def _solve_sorted(values: tuple[int, ...], target: Fraction) -> str | None:
    # Items are (value, text, precedence): 3 for a number, 2 for * /, 1 for + -.
    seen: set[tuple[Fraction, ...]] = set()

    def wrap(text: str, prec: int, need: int) -> str:
        return f"({text})" if prec < need else text

    def search(items: list[tuple[Fraction, str, int]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == target else None
        key = tuple(sorted(v for v, _, _ in items))
        if key in seen:  # this multiset of values already failed
            return None
        seen.add(key)
        for i, j in combinations(range(len(items)), 2):
            rest = [items[k] for k in range(len(items)) if k not in (i, j)]
            (a, ta, pa), (b, tb, pb) = items[i], items[j]
            options = [
                (a + b, f"{ta} + {tb}", 1),
                (a * b, f"{wrap(ta, pa, 2)} * {wrap(tb, pb, 2)}", 2),
                (a - b, f"{ta} - {wrap(tb, pb, 2)}", 1),
                (b - a, f"{tb} - {wrap(ta, pa, 2)}", 1),
            ]
            if b:
                options.append((a / b, f"{wrap(ta, pa, 2)} / {wrap(tb, pb, 3)}", 2))
            if a:
                options.append((b / a, f"{wrap(tb, pb, 2)} / {wrap(ta, pa, 3)}", 2))
            for value, text, prec in options:
                found = search([*rest, (value, text, prec)])
                if found is not None:
                    return found
        return None

    return search([(Fraction(v), str(v), 3) for v in values])


def solve(values: Sequence[int], target: int = 24) -> str | None:
    """An expression using each value once that equals ``target``, or None.

    Exhaustive search over every expression tree with exact arithmetic, so
    ``None`` means no solution exists.

    >>> solve([3, 3, 8, 8])
    '8 / (3 - 8 / 3)'
    >>> solve([1, 1, 1, 1]) is None
    True
    """
    return _solve_sorted(tuple(sorted(values, reverse=True)), Fraction(target))


def format_prompt(cards: Sequence[str], rule: str = "ten", target: int = 24) -> str:
    """A plain task prompt for a puzzle, stating the face rule."""
    faces = "J, Q and K count as 10" if rule == "ten" else "J, Q and K count as 11, 12 and 13"
    return (
        f"Cards: {', '.join(cards)}. Use each card exactly once, with + - * / and parentheses, "
        f"to make {target}. A counts as 1; {faces}. Put the expression inside <answer></answer>."
    )


def generate_puzzles(
    n: int, rule: str = "ten", seed: int = 0, solvable_only: bool = True, target: int = 24
) -> list[dict[str, Any]]:
    """Deal ``n`` four-card puzzles from a 52-card deck.

    Each puzzle is a dict usable directly as the verifier's reference:
    ``cards``, ``rule``, ``values``, ``target``, ``solution`` (None when
    unsolvable) and ``prompt``. The same seed gives the same puzzles.

    >>> p = generate_puzzles(1, rule="rank", seed=3)[0]
    >>> Game24Verifier().verify(p["solution"], p).passed
    True
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {sorted(RULES)}")
    rng = random.Random(seed)
    deck = [card for card in CARDS for _ in range(4)]
    puzzles: list[dict[str, Any]] = []
    for _ in range(100 + 50 * n):  # generous: most deals are solvable for 24
        if len(puzzles) >= n:
            break
        cards = rng.sample(deck, 4)
        values = card_values(cards, rule)
        solution = solve(values, target)
        if solvable_only and solution is None:
            continue
        puzzles.append(
            {
                "cards": cards,
                "rule": rule,
                "values": values,
                "target": target,
                "solution": solution,
                "prompt": format_prompt(cards, rule, target),
            }
        )
    if len(puzzles) < n:
        raise ValueError(f"found only {len(puzzles)} solvable puzzles for target {target}")
    return puzzles


# --------------------------------------------------------------------------- the verifier


class Game24Verifier(BatchedVerifier):
    """Checks a Game24 answer exactly: right cards, allowed operators, value 24.

    Args:
        rule: Face rule used when the reference names none: ``"ten"`` or ``"rank"``.
        target: Target value when the reference names none.

    The verdict's ``extracted`` is the expression read (operators normalised,
    trailing ``= 24`` removed); ``meta`` holds the card values used.
    """

    name = "game24"

    def __init__(self, rule: str = "ten", target: int = 24):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; use one of {sorted(RULES)}")
        self.rule, self.target = rule, target

    def puzzle(self, reference: Any) -> tuple[list[int], int]:
        """Card values and target from a reference. Raises ValueError when unusable."""
        if isinstance(reference, str):
            reference = json.loads(reference)
        if isinstance(reference, (list, tuple)):
            reference = {"cards": list(reference)}
        if not isinstance(reference, dict):
            raise ValueError(f"expected a puzzle dict, got {type(reference).__name__}")
        target = reference.get("target", self.target)
        if not isinstance(target, int) or isinstance(target, bool):
            raise ValueError(f"target must be an integer, got {target!r}")
        if isinstance(reference.get("cards"), (list, tuple)):
            values = card_values(reference["cards"], reference.get("rule") or self.rule)
        elif isinstance(reference.get("values"), (list, tuple)):
            values = [int(v) for v in reference["values"]]
        else:
            raise ValueError("the puzzle has no 'cards'")
        if not values:
            raise ValueError("the puzzle has no cards")
        return values, target

    def verify(self, response: str, reference: Any) -> Verdict:
        try:
            values, target = self.puzzle(reference)
        except (ValueError, TypeError) as exc:
            return skipped(f"unusable puzzle: {exc}")
        if not isinstance(response, str):
            return failed("fail", f"response is {type(response).__name__}, not text")
        if len(response) > MAX_RESPONSE_CHARS:
            return failed("too_large", f"{len(response)} chars > {MAX_RESPONSE_CHARS}")
        expression = extract_expression(response)
        if expression is None:
            return failed("fail", "no expression")
        if len(expression) > MAX_EXPRESSION_CHARS:
            return failed("fail", f"expression too long ({len(expression)} chars > {MAX_EXPRESSION_CHARS})")
        m = _TRAILING_EQUALS.match(expression)
        if m and int(m.group(2)) == target:
            expression = m.group(1).strip()
        elif m:
            return failed("fail", f"expression ends with '= {m.group(2)}', not '= {target}'", extracted=expression)
        try:
            tree = parse(expression)
        except ExpressionError as exc:
            return failed("fail", str(exc), extracted=expression)
        used = leaves(tree)
        if Counter(used) != Counter(values):
            detail = f"wrong numbers: used {sorted(used)}, the cards give {sorted(values)}"
            return failed("fail", detail, extracted=expression, values=values)
        try:
            value = evaluate(tree)
        except ZeroDivisionError:
            return failed("fail", "division by zero", extracted=expression, values=values)
        if value != target:
            return failed("fail", f"evaluates to {value}", extracted=expression, values=values)
        return passed(f"{expression} = {target}", extracted=expression, values=values)
