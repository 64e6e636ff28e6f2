"""One line per verifier: accuracy, false passes, median / p99 / max latency, in one run.

Run:
    python benchmarks/all_verifiers.py [--data tests/data/math_pairs.jsonl] [--show]
    python benchmarks/all_verifiers.py --verifiers-from DIR   # another checkout's verifiers/ (a "before")

Math: our ``MathVerifier`` (result cache off, one ``verify`` at a time, so each
pair is really judged) against Math-Verify (called as verl calls it: the gold
wrapped in ``\\boxed{}``, ``verify(parse(gold), parse(response))``) on the
hand-labelled pairs in ``tests/data/math_pairs.jsonl``, with the reward-hacking
pairs (categories ``hack_*``) also counted on their own. Latency is per call,
extraction included.

Other verifiers: the labelled cases below (right answers, wrong answers, hostile
inputs up to 1 MB), timed per call. ``max`` is the slowest call; every verifier
must stay within its own time limit plus 0.5 s (``limit`` column; the verifiers
with no limit of their own are held to 0.5 s). The in-process verifiers run each
case in a forked child killed after ``--cap-s`` (its time then reads as the cap),
so an old, unbounded version can be measured too.

Figures depend on machine load; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def timed(fn, rows: list[tuple]) -> tuple[list[bool], list[float]]:
    got, times = [], []
    for row in rows:
        t0 = time.perf_counter()
        try:
            ok = bool(fn(*row))
        except Exception:
            ok = False
        times.append(time.perf_counter() - t0)
        got.append(ok)
    return got, times


def timed_capped(fn, rows: list[tuple], cap_s: float) -> tuple[list[bool], list[float]]:
    """Like :func:`timed`, each call in a forked child killed at ``cap_s`` (then timed as ``cap_s``).

    Only for the in-process verifiers, so that a call with no bound of its own
    cannot stall the run; the time is measured inside the child.
    """
    got, times = [], []
    for row in rows:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            t0 = time.perf_counter()
            try:
                ok = bool(fn(*row))
            except Exception:
                ok = False
            os.write(w, json.dumps([ok, time.perf_counter() - t0]).encode())
            os._exit(0)
        os.close(w)
        deadline = time.monotonic() + cap_s
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.005)
        data = b""
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        else:
            data = os.read(r, 4096)
        os.close(r)
        ok, t = json.loads(data) if data else (False, cap_s)
        got.append(ok)
        times.append(t)
    return got, times


def mathverify_fn():
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    def fn(response: str, gold: str) -> bool:
        return verify(parse("\\boxed{" + gold + "}"), parse(response))

    fn("\\boxed{1}", "1")
    return fn


def other_cases() -> dict[str, list[tuple[str, object, bool]]]:
    """(response, reference, expected) per registry name; hostile inputs expect a non-pass."""
    huge = "x" * MB
    add = {"mode": "call", "entry_point": "f", "cases": [{"input": [2, 3], "output": 5}]}
    big = {"mode": "call", "entry_point": "f", "cases": [{"input": [], "output": 10**12 + 7}]}
    tests = {"mode": "assert", "entry_point": "f", "tests": "assert f(2, 3) == 5"}
    return {
        "game24": [
            ("<answer>(10 - 4) * (13 - 9)</answer>", {"values": [10, 4, 13, 9]}, True),
            ("(8 / (3 - 8 / 3))", [8, 3, 8, 3], True),
            ("<answer>4 * 6</answer>", [4, 6, 1, 1], False),
            ("<answer>(10 - 4) * (13 - 8)</answer>", {"values": [10, 4, 13, 9]}, False),
            ("<answer>" * 25000, [1, 2, 3, 4], False),
            ("(" * 100_000 + "1+2+3*6" + ")" * 100_000, [1, 2, 3, 6], False),
            (huge, [1, 2, 3, 4], False),
        ],
        "exact": [
            ("Answer: Paris", "paris", True),
            ("<answer>Lyon</answer>", "Paris", False),
            ("<answer>" * 125_000, "Paris", False),
            (huge, "Paris", False),
        ],
        "json": [
            ('```json\n{"a": 1}\n```', '{"a": 1}', True),
            ('{"a": 2}', '{"a": 1}', False),
            ("[" * 200_000 + "]" * 200_000, None, False),
            ("```json\n" * 100_000, '{"a": 1}', False),
        ],
        "think_answer": [
            ("<think>x</think><answer>1</answer>", None, True),
            ("<answer>1</answer><think>x</think>", None, False),
            ("<think>" * 100_000, None, False),
        ],
        "code": [
            ("def f(a, b):\n    return a + b", add, True),
            ("def f(a, b):\n    return a * b", add, False),
            ("def f(a, b):\n    return a + b", tests, True),
            ("def f():\n    return 1e12", big, False),
            ("def f():\n    return 10**12 + 7.0", big, False),
            ("import time\ndef f(a, b):\n    time.sleep(60)", {**add, "limits": {"timeout_s": 1}}, False),
            ("# " + "x" * (MB - 2), add, False),
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "math_pairs.jsonl")
    ap.add_argument("--verifiers-from", type=Path, default=ROOT, help="folder holding the verifiers/ to measure")
    ap.add_argument("--cap-s", type=float, default=30.0, help="kill an in-process verifier call after this long")
    ap.add_argument("--show", action="store_true", help="list every math pair either side gets wrong")
    args = ap.parse_args()
    args.data = args.data.resolve()
    sys.path.insert(0, str(args.verifiers_from.resolve()))
    os.chdir(args.verifiers_from)  # worker processes started with ``python -c`` import from here too
    import verifiers
    from verifiers.math import MathVerifier

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    print(f"verifiers from {Path(verifiers.__file__).parent}; {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    math_v = MathVerifier(cache_size=0)
    math_v.warm_up(1)
    pairs = [(r["response"], r["gold"]) for r in rows]
    ours, ours_t = timed(lambda resp, gold: math_v.verify(resp, gold).passed, pairs)
    mv_fn = mathverify_fn()
    mv = timed(mv_fn, pairs) if mv_fn else None

    header = ("verifier", "set", "n", "accuracy", "false passes", "median ms", "p99 ms", "max ms", "limit ms")
    table = [header]

    def line(name: str, subset: str, idx: list[int], got: list[bool], times: list[float], limit: float) -> None:
        exp = [rows[i]["expected"] if subset != "cases" else idx_expected[i] for i in idx]
        hits = [got[i] for i in idx]
        t = [times[i] for i in idx]
        fp = sum(h and not e for h, e in zip(hits, exp, strict=True))
        acc = sum(h == e for h, e in zip(hits, exp, strict=True)) / len(idx)
        table.append(
            (
                name,
                subset,
                str(len(idx)),
                f"{acc:.3f}",
                str(fp),
                f"{statistics.median(t) * 1000:.2f}",
                f"{pct(t, 0.99) * 1000:.2f}",
                f"{max(t) * 1000:.1f}",
                f"{limit * 1000:.0f}" if limit else "-",
            )
        )

    idx_expected: list[bool] = []
    everything = list(range(len(rows)))
    hacks = [i for i, r in enumerate(rows) if r["category"].startswith("hack_")]
    limit = math_v.timeout_s + 0.5
    line("math", "labelled pairs", everything, ours, ours_t, limit)
    if mv:
        line("math-verify", "labelled pairs", everything, mv[0], mv[1], 0)
    line("math", "hack_* pairs", hacks, ours, ours_t, limit)
    if mv:
        line("math-verify", "hack_* pairs", hacks, mv[0], mv[1], 0)
    hostile = [("\\boxed{" * 40_000, "1"), ("$" * 199_000, "1"), ("9" * 199_999, "1"), ("x" * MB, "1")]
    h_got, h_t = timed(lambda resp, gold: math_v.verify(resp, gold).passed, hostile)
    idx_expected = [False] * len(hostile)
    line("math", "cases", list(range(len(hostile))), h_got, h_t, limit)
    table[-1] = (*table[-1][:1], "hostile inputs", *table[-1][2:])

    for name, cases in other_cases().items():
        v = verifiers.get(name, workers=1) if name == "code" else verifiers.get(name)
        if name == "code":
            v.verify(cases[0][0], cases[0][1])  # start the worker outside the timing
        judge = lambda resp, ref, v=v: v.verify(resp, ref).passed  # noqa: E731
        rows_ = [c[:2] for c in cases]
        got, times = timed(judge, rows_) if name == "code" else timed_capped(judge, rows_, args.cap_s)
        idx_expected = [c[2] for c in cases]
        own = [c[1].get("limits", {}).get("timeout_s", 5.0) for c in cases if name == "code"]
        line(name, "cases", list(range(len(cases))), got, times, 0.5 + max(own, default=0.0))
        if name == "code":
            v.close()

    width = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
        if k == 0:
            print("  ".join("-" * w for w in width))
    print(f"load average after: {os.getloadavg()}")
    if args.show:
        print("\nmath pairs either side gets wrong:")
        for i, r in enumerate(rows):
            if ours[i] != r["expected"] or (mv and mv[0][i] != r["expected"]):
                tag = f"ours={ours[i]!s:5} mv={mv[0][i] if mv else '-'!s:5} expected={r['expected']!s:5}"
                print(f"  {tag} [{r['category']}] {r['response'][:70]!r} vs {r['gold'][:40]!r}: {r['why']}")


if __name__ == "__main__":
    main()
