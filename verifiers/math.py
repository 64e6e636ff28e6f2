"""Math answers judged by rules and sympy, with a hard time limit on every comparison.

    >>> from verifiers.math import MathVerifier
    >>> v = MathVerifier()
    >>> v.verify(r"... so the answer is \\boxed{\\frac{1}{2}}", "0.5").passed
    True
    >>> v.verify("#### 1,234", "1234").reason
    'pass: equivalent (gsm8k, fast path)'
    >>> reward = v.as_reward(reference_field="answer")
    >>> reward(completions=[[{"role": "assistant", "content": "\\\\boxed{2}"}]], answer=["2"])
    [1.0]

How a pair is judged
--------------------
1. Size check: a response over 200,000 characters, or an extracted answer over
   2,000 characters or nested deeper than 40 brackets or 3 exponents, is
   ``too_large`` before anything is parsed.
2. Extraction (the first that applies): the last ``\\boxed{}``/``\\fbox{}`` (all
   of them, to catch hedging), ``<answer>...</answer>``, GSM8K ``#### x``,
   "the answer is x" / "Final Answer: x", the last ``$...$``/``\\(...\\)``, a
   short bare response, then (``fallback_last_number=True``) the last number.
   Text after ``</think>`` is used when present. The gold answer is read the
   same way but never by prose markers or the number fallback: an unmarked
   gold is the answer itself, bare LaTeX or plain text.
3. Fast paths without sympy: identical cleaned strings, or two plain numbers.
   Most pairs stop here. Repeated (answer, gold) pairs hit a cache.
4. Otherwise both sides are parsed by our own LaTeX-to-sympy converter and
   compared, inside a worker process with a wall-clock limit (``timeout_s``)
   and a memory cap (``memory_mb``). See ``verifiers._math.worker`` for why a
   process, not a signal. The pieces, in ``verifiers._math``: ``text`` (extraction, cleaning,
   fast paths; no sympy), ``latex`` (one expression to sympy),
   ``parse`` (answer structure), ``equal`` (these conventions).

Equivalence conventions
-----------------------
- Exact rationals and symbolic forms go through sympy; unreduced or unevaluated
  forms equal their value (``\\frac{6}{8}`` = 3/4, ``2^{10}`` = 1024, ``\\sqrt{8}`` =
  ``2\\sqrt2``, ``\\binom{5}{2}`` = 10). Expressions with variables: see the
  last families below.
- A decimal in the response equals an exact value iff they agree when rounded
  to 6 decimal places (0.333333 = 1/3, 0.333 != 1/3); for gold values below
  1e-4 in size, to 6 significant digits instead. A decimal gold is itself
  exact: it accepts the exact value only when equal (gold 0.5 accepts 1/2,
  gold 0.333 rejects 1/3).
- Percent is a unit: with the sign on either side 30% = 30 = 0.3; bare 0.5 !=
  bare 50.
- Units are ignored when absent on one side or matching (5 cm = 5 = 5
  centimeters); the same number with a different unit is wrong (5 m != 5 cm;
  no conversion). Currency signs and ``\\text{}`` wrappers are stripped.
- A comma is a thousands separator only in ``d,ddd`` groups with no space (not
  right inside brackets, where it separates items): 3,5 is the list {3, 5}
  (decimal commas: below). ``\\,``, ``{,}`` and spaces between digit groups are thousands
  separators.
- Sets (``\\{1,2\\}``) and unordered solution lists (``1, 2``; ``1 or 2``)
  compare as sets; tuples and points ``(1, 2)`` in order. ``\\pm a`` is {a, -a}.
  ``x = 3`` matches 3; ``x=1, y=2`` matches (1, 2) (variables in name order);
  a true numeric chain ``48 + 24 = 72`` is its last value (a false one fails).
- Intervals and inequalities: a gold inequality accepts the equivalent
  interval (x > 2 accepts ``(2, \\infty)``); a gold interval does not accept an
  inequality. ``\\cup`` and "or" build unions; ``x \\in [a, b]`` is the interval.
- Matrices (``pmatrix``/``bmatrix``/``array``) element by element; a row or
  column vector equals the tuple of its entries.
- Complex numbers with ``i`` (or ``j`` when no ``i`` appears); scientific
  notation (``6.02e23``, ``6.02\\times10^{23}``); unicode π, √, ×, ≤, °; degrees
  inside trig functions (``\\sin 30^\\circ`` = 1/2; a bare trailing ° is a unit);
  mixed numbers (``2\\frac{1}{2}`` = ``2 1/2`` = 5/2); base subscripts
  (``1010_2``: equal to another subscripted numeral of the same value, or to the
  bare digits ``1010``); ``\\infty``; multiple-choice letters (``(C)`` = C); text
  answers case-insensitively.
- Two or more different final answers to one question (two different boxes, or
  "3 or 4" against a single gold) is wrong (hedging).

How answers are read, family by family
--------------------------------------
Each family was decided on purpose; where two readings exist, the one chosen
is the one that cannot turn a wrong answer into a pass.

- Text that changes meaning: a number with words such as "or", "not",
  "more", "at least", "is", "thousand", "million", "squared", "times"
  (``\\boxed{7 \\text{ or more}}``, ``\\boxed{5 \\text{ thousand}}``) is not read
  as a number with a unit: it fails. Units stay units.
- Lists and thousands: a comma with a space is a list separator on every
  reading (``2, 100`` is never 2100); ``2,100`` with no space is a thousands
  separator. Decimal commas only where no list reading is likely: a zero
  whole part (``0,75`` for the gold 0.75), against a one-number gold; ``3,5``
  stays the list {3, 5}.
- Boxes: a box holding another box fails (``\\boxed{5 \\boxed{6}}`` is neither
  30, 5 nor 6), except a box that only holds a box (``\\boxed{\\boxed{7}}`` is
  7). Several boxes against a gold list of the same length are one answer
  (``\\boxed{1}, \\boxed{2}, \\boxed{4}`` for ``1, 2, 4``); otherwise hedging.
- Restated problems: a sentence "prove / show / verify / check that ..." is the
  task restated, not an answer; it is dropped before anything is extracted,
  boxes included (a box is easy to add to a restated task).
- Prose answers: after "the answer is", a sentence stating the value ("The
  largest $n$ is 34") gives the value; a negated alternative ("34, not 35",
  "7 and not 8") is dropped, not read as hedging. Bold text ``**17**`` is an
  answer marker after "the answer is"; like boxes, two different bold answers
  are hedging.
- Relations: ``x = 3``, ``AB = 4``, ``f(2) = -4``, ``(p, q) = (3, 2)`` and
  ``5 = x`` give their value; ``a + b = 7`` (a sum or product of plain names,
  no coefficients, a non-zero number on the right) gives 7, as the question
  asked for ``a + b``. Any other equation is an equation: equal to the gold
  equation up to a non-zero factor after moving terms (``y = 2x + 3`` equals
  ``2x - y + 3 = 0``). A ratio ``7:32`` is the number 7/32 (``14:64`` is the
  same ratio; ``32:7`` is not).
- Intervals: a gold interval still rejects ``x > 2`` (the question asked for
  the set), but accepts ``x \\ne 2`` (how the reals minus {2} are written) and a
  range ``0 < f(x) < 1`` stated about a function value.
- Worked-solution golds: a gold of several sentences is read like a response
  (its box, marker or last number), as a person would.
- Notation: ``0.\\overline{3}`` and ``0.333\\ldots`` (a period repeated at least
  twice) are exact fractions; ``\\mathbb{R}`` is ``(-\\infty, \\infty)``;
  ``\\emptyset``, ``\\varnothing`` and ``\\{\\}`` are one empty set; an angle in
  degrees equals the same angle in radians when the other side is a multiple
  of ``\\pi`` (``90^\\circ`` = ``\\pi/2``; a bare 90 is not); a gold ``(C) 12``
  accepts the letter C or the value 12, and ``(C) 12`` answers the gold C.
- Symbolic equality is decided exactly where sympy can (the difference expands
  to 0) and otherwise at five points drawn from ``os.urandom`` on every call, so
  a term made to vanish on any fixed set of points is seen.
- Time: responses over 20,000 characters are read (extraction included) inside
  a worker, under ``timeout_s``; shorter ones are read in the caller by linear
  scans.

Outcomes: ``pass: ...``, ``fail: ...``, ``timeout: ...``, ``too_large: ...``,
``skip: unparseable gold ...`` (ungradable: the reward is None), ``error: ...``.
``Verdict.extracted`` is the extracted answer. ``verify`` never raises on model
output and is safe to call from many threads at once.

Known gaps: no unit conversion (5 m vs 500 cm fails); hedging in prose
without markers ("7, or maybe 8") is not seen, the last number is taken;
symbolic equality that sympy cannot prove rests on five unpredictable
points; a variable named ``e`` is read as Euler's number; the decimal rule
applies to whole numbers, not to decimals inside larger expressions.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from verifiers._math import text as _mathtext
from verifiers._math import worker as _worker
from verifiers.base import BatchedVerifier, Verdict, default_workers, failed, passed

#: Responses longer than this are read (extraction included) inside a worker, under ``timeout_s``;
#: shorter ones are read in the caller, where the linear scans take well under a millisecond.
INLINE_CHARS = 20_000


class MathVerifier(BatchedVerifier):
    """Judge a math response against a gold answer string.

    Args:
        timeout_s: Wall-clock limit for parsing and comparing one pair.
        fallback_last_number: Use the last number in the response when no
            answer marker (box, tag, "the answer is", ...) is found.
        memory_mb: Address-space cap of each worker process.
        max_workers: Worker processes shared by concurrent ``verify`` calls.
        cache_size: Entries in the (answer, gold) result cache; 0 disables it.
    """

    name = "math"
    reward_workers = None  # as_reward judges a batch on every core by default

    def __init__(
        self,
        timeout_s: float = 3.0,
        fallback_last_number: bool = True,
        memory_mb: int = 1024,
        max_workers: int | None = None,
        cache_size: int = 65536,
    ):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = float(timeout_s)
        self.fallback_last_number = bool(fallback_last_number)
        self.memory_mb = int(memory_mb)
        self.max_workers = max_workers or min(4, default_workers())
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API

    def verify(self, response: str, reference: Any) -> Verdict:
        """Judge one response; never raises, never runs past ``timeout_s`` (+ overhead)."""
        return self.verify_batch([response], [reference], workers=1)[0]

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]:
        """Judge many pairs, in order. ``workers`` worker processes compare in parallel."""
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        workers = default_workers() if workers is None else max(1, int(workers))
        if workers > 1 and len(responses) >= 4 * workers:
            return self._batch_in_workers(responses, references, workers)
        big = [i for i, r in enumerate(responses) if isinstance(r, str) and len(r) > INLINE_CHARS]
        if big:  # long responses are read inside a worker, under the time limit, not before it
            out_big = self._batch_in_workers([responses[i] for i in big], [references[i] for i in big], 1)
        out: list[Verdict | None] = [None] * len(responses)
        for i, verdict in zip(big, out_big if big else [], strict=True):
            out[i] = verdict
        pending: dict[tuple[Any, ...], list[tuple[int, str | None]]] = {}
        for i, (resp, ref) in enumerate(zip(responses, references, strict=True)):
            if out[i] is not None:
                continue
            try:
                step = _mathtext.prepare(resp, ref, self.fallback_last_number)
            except Exception as exc:  # a bug in extraction is an error outcome, not a crash
                out[i] = failed("error", f"{type(exc).__name__}: {exc}")
                continue
            if step[0] == "done":
                out[i] = _verdict(step[1], step[2], step[3], path="fast")
                continue
            key = (tuple(step[1]), step[2])
            hit = self._cache_get(key)
            if hit is not None:
                out[i] = _verdict(hit[0], hit[1], step[3], path="cache")
            else:
                pending.setdefault(key, []).append((i, step[3]))
        if pending:
            keys = list(pending)
            requests = [{"op": "judge", "candidates": list(c), "gold": g} for c, g in keys]
            for key, res in zip(keys, self._run(requests, workers), strict=True):
                status, detail = str(res[0]), str(res[1])
                if status in ("pass", "fail", "skip"):
                    self._cache_put(key, (status, detail))
                for i, extracted in pending[key]:
                    out[i] = _verdict(status, detail, extracted, path="worker")
        return [v if v is not None else failed("error", "internal: no verdict") for v in out]

    def _batch_in_workers(self, responses: Sequence[Any], references: Sequence[Any], workers: int) -> list[Verdict]:
        """Big batches: whole pairs (extraction included) go to the workers, so the
        caller's process only dispatches and the work spreads over ``workers`` cores."""
        out: list[Verdict | None] = [None] * len(responses)
        pending: dict[tuple[Any, Any, bytes], list[int]] = {}
        for i, (resp, ref) in enumerate(zip(responses, references, strict=True)):
            resp = resp if isinstance(resp, str) or resp is None else str(resp)
            ref = ref if isinstance(ref, (str, int, float)) or ref is None else str(ref)
            if resp is not None and len(resp) > _mathtext.MAX_RESPONSE_CHARS:
                n = len(resp)
                out[i] = failed("too_large", f"response of {n} characters (limit {_mathtext.MAX_RESPONSE_CHARS})")
                continue
            digest = hashlib.blake2b(repr((resp, ref, self.fallback_last_number)).encode(), digest_size=16).digest()
            hit = self._cache_get(("pair", digest))
            if hit is not None:
                out[i] = _verdict(hit[0], hit[1], hit[2], path="cache")
            else:
                pending.setdefault((resp, ref, digest), []).append(i)
        keys = list(pending)
        requests = [
            {"op": "pair", "response": r, "reference": g, "fallback": self.fallback_last_number} for r, g, _ in keys
        ]
        for key, res in zip(keys, self._run(requests, workers), strict=True):
            status, detail, extracted = str(res[0]), str(res[1]), res[2] if len(res) > 2 else None
            if status in ("pass", "fail", "skip"):
                self._cache_put(("pair", key[2]), (status, detail, extracted))
            for i in pending[key]:
                out[i] = _verdict(status, detail, extracted, path="worker")
        return [v if v is not None else failed("error", "internal: no verdict") for v in out]

    def warm_up(self, workers: int = 1) -> None:
        """Start ``workers`` worker processes now, so the first calls do not wait for them."""
        _worker.get_pool(self.memory_mb).warm_up(max(1, workers), max(workers, self.max_workers))

    # ------------------------------------------------------------------ internals

    def _run(self, requests: list[dict[str, Any]], workers: int) -> list[list[Any]]:
        pool = _worker.get_pool(self.memory_mb)
        workers = min(workers, len(requests))
        limit = max(workers, self.max_workers)
        if workers <= 1:
            return pool.run(requests, self.timeout_s, limit)
        size = max(1, min(64, -(-len(requests) // (workers * 3))))  # few round trips, still balanced
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(lambda ch: pool.run(ch, self.timeout_s, limit), chunks))
        return [r for part in parts for r in part]

    def _own_lock(self) -> threading.Lock:
        """The cache lock of this process: a child forked while a thread held it gets a new one."""
        if getattr(self, "_lock_pid", None) != os.getpid():
            self._lock, self._lock_pid = threading.Lock(), os.getpid()
        return self._lock

    def _cache_get(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self.cache_size <= 0:
            return None
        with self._own_lock():
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _cache_put(self, key: tuple[Any, ...], value: tuple[Any, ...]) -> None:
        if self.cache_size <= 0:
            return
        with self._own_lock():
            self._cache[key] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


def _verdict(status: str, detail: str, extracted: str | None, **meta: Any) -> Verdict:
    if status == "pass":
        return passed(detail, extracted, **meta)
    return failed(status, detail, extracted, **meta)
