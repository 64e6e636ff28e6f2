"""Our MathVerifier against Math-Verify on the labeled pairs in tests/data/math_pairs.jsonl.

Run:
    python benchmarks/math_vs_mathverify.py [--rounds 5] [--data tests/data/math_pairs.jsonl]

Math-Verify is called as verl calls it: the gold answer wrapped in ``\\boxed{}``,
``verify(parse(gold), parse(response))``, on the main thread (its timeouts use
``signal.alarm``). Ours runs with the result cache off so every pair is really
judged. Reported: accuracy, false positives (wrong answers accepted), false
negatives (right answers rejected), per-item median and p95 latency, and
throughput of ``verify_batch(workers=2)`` relative to one ``verify`` at a time.
Latency and throughput depend on machine load; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifiers.math import MathVerifier  # noqa: E402


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_ours(rows: list[dict]) -> tuple[list[bool], list[float]]:
    v = MathVerifier(cache_size=0)
    v.warm_up(1)  # start the worker outside the timing
    got, times = [], []
    for r in rows:
        t0 = time.perf_counter()
        got.append(v.verify(r["response"], r["gold"]).passed)
        times.append(time.perf_counter() - t0)
    return got, times


def run_mathverify(rows: list[dict]) -> tuple[list[bool], list[float]] | None:
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    verify(parse("\\boxed{1}"), parse("1"))
    got, times = [], []
    for r in rows:
        t0 = time.perf_counter()
        try:
            ok = bool(verify(parse("\\boxed{" + r["gold"] + "}"), parse(r["response"])))
        except Exception:
            ok = False
        times.append(time.perf_counter() - t0)
        got.append(ok)
    return got, times


def _worker_cpu() -> float:
    """CPU seconds used so far by this process's math workers (Linux /proc; 0 elsewhere)."""
    from verifiers._math import worker as _worker

    total = 0.0
    for pool in list(_worker._POOLS.values()):
        for w in list(pool.idle.queue):
            try:
                fields = Path(f"/proc/{w.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
    return total


def throughput(rows: list[dict], rounds: int) -> dict[str, float]:
    """One ``verify`` at a time vs ``verify_batch(workers=2)``: items/s and CPU per pass.

    The two are timed in alternation and the best round of each is kept, so a
    burst of load from other processes hits both alike. Every pass starts on
    freshly forked workers, so neither mode profits from the workers' parse
    cache. CPU seconds (caller plus workers) show how the work splits when the
    wall clock is noisy.
    """
    from verifiers._math import worker as _worker

    v = MathVerifier(cache_size=0)
    responses, golds = [r["response"] for r in rows], [r["gold"] for r in rows]
    pool = _worker.get_pool(v.memory_mb)
    wall: dict[str, list[float]] = {"single": [], "batch": []}
    cpu: dict[str, list[tuple[float, float]]] = {"single": [], "batch": []}
    for _ in range(rounds):
        for mode in ("single", "batch"):
            pool.recycle()  # fresh workers for every pass: no parse cache carried over
            v.warm_up(2)  # forking them is not timed
            c0, w0, t0 = time.process_time(), _worker_cpu(), time.perf_counter()
            if mode == "single":
                for resp, gold in zip(responses, golds, strict=True):
                    v.verify(resp, gold)
            else:
                v.verify_batch(responses, golds, workers=2)
            wall[mode].append(time.perf_counter() - t0)
            cpu[mode].append((time.process_time() - c0, _worker_cpu() - w0))
    out = {f"{m}_items_s": len(rows) / min(wall[m]) for m in wall}
    for m in cpu:
        out[f"{m}_caller_cpu"] = statistics.median(c for c, _ in cpu[m])
        out[f"{m}_worker_cpu"] = statistics.median(w for _, w in cpu[m])
        out[f"{m}_wall"] = min(wall[m])
    return out


def score(rows: list[dict], got: list[bool]) -> dict[str, int]:
    fp = sum(1 for r, g in zip(rows, got, strict=True) if g and not r["expected"])
    fn = sum(1 for r, g in zip(rows, got, strict=True) if not g and r["expected"])
    return {"correct": len(rows) - fp - fn, "fp": fp, "fn": fn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "math_pairs.jsonl")
    ap.add_argument("--rounds", type=int, default=7, help="timed passes over the set for the throughput figures")
    ap.add_argument("--show", action="store_true", help="list every item either verifier gets wrong")
    args = ap.parse_args()
    rows = load(args.data)
    n = len(rows)
    print(f"{n} labeled pairs ({sum(r['expected'] for r in rows)} should pass); load average {os.getloadavg()}")

    ours, ours_t = run_ours(rows)
    mv = run_mathverify(rows)
    s_ours = score(rows, ours)
    s_mv = score(rows, mv[0]) if mv else None
    tp = throughput(rows, args.rounds)
    single_tp, batch_tp = tp["single_items_s"], tp["batch_items_s"]
    load_after = os.getloadavg()[0]

    def ms(x: float) -> str:
        return f"{x * 1000:.2f}"

    lines = [("metric", "ours", "math-verify", "ours/mv")]
    acc_o = s_ours["correct"] / n
    acc_m = s_mv["correct"] / n if s_mv else float("nan")
    lines.append(("accuracy", f"{acc_o:.3f}", f"{acc_m:.3f}", f"{acc_o / acc_m:.2f}" if s_mv else "-"))
    lines.append(("false positives", str(s_ours["fp"]), str(s_mv["fp"]) if s_mv else "-", "-"))
    lines.append(("false negatives", str(s_ours["fn"]), str(s_mv["fn"]) if s_mv else "-", "-"))
    med_o, p95_o = statistics.median(ours_t), pct(ours_t, 0.95)
    if mv:
        med_m, p95_m = statistics.median(mv[1]), pct(mv[1], 0.95)
        lines.append(("median ms/item", ms(med_o), ms(med_m), f"{med_o / med_m:.2f}"))
        lines.append(("p95 ms/item", ms(p95_o), ms(p95_m), f"{p95_o / p95_m:.2f}"))
    else:
        lines.append(("median ms/item", ms(med_o), "-", "-"))
        lines.append(("p95 ms/item", ms(p95_o), "-", "-"))
    lines.append(("items/s, verify one by one (best round)", f"{single_tp:.0f}", "-", "-"))
    lines.append(("items/s, verify_batch 2 workers (best)", f"{batch_tp:.0f}", "-", "-"))
    lines.append(("batch/single throughput", f"{batch_tp / single_tp:.2f}x", "-", "-"))
    width = [max(len(row[i]) for row in lines) for i in range(4)]
    for k, row in enumerate(lines):
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
        if k == 0:
            print("  ".join("-" * w for w in width))

    print(f"({os.cpu_count()} CPUs; 1-minute load average {load_after:.2f} after the throughput runs)")
    for m in ("single", "batch"):
        print(
            f"{m:6s} pass over the set: wall {tp[m + '_wall'] * 1000:.0f} ms (best), CPU caller "
            f"{tp[m + '_caller_cpu'] * 1000:.0f} ms + workers {tp[m + '_worker_cpu'] * 1000:.0f} ms (median)"
        )
    print("\nper category (correct/total): ours | math-verify")
    cats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for i, r in enumerate(rows):
        c = cats[r["category"]]
        c[0] += ours[i] == r["expected"]
        c[1] += bool(mv) and mv[0][i] == r["expected"]
        c[2] += 1
    for name, (o, m, t) in sorted(cats.items()):
        print(f"  {name:14s} {o:3d}/{t:<3d} | {m:3d}/{t}")
    if args.show:
        print("\nitems either verifier gets wrong:")
        for i, r in enumerate(rows):
            if ours[i] != r["expected"] or (mv and mv[0][i] != r["expected"]):
                tag = f"ours={ours[i]!s:5} mv={mv[0][i] if mv else '-'!s:5} expected={r['expected']!s:5}"
                print(f"  {tag} [{r['category']}] {r['response'][:60]!r} vs {r['gold'][:30]!r}: {r['why']}")


if __name__ == "__main__":
    main()
