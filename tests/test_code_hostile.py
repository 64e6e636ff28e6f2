"""One hostile behaviour per test: the verdict, and the host-side invariant it threatens.

Every test also checks that no sandboxed process outlives its verdict. The
``kill(-1)`` and fork-bomb tests run their verifier inside a PID namespace of
their own, so a broken sandbox could not take the test runner down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from verifiers.code import CodeVerifier

SANDBOX_UIDS = range(1_500_000_000, 1_600_000_000)  # where verifiers._sandbox allots its uids
SECRET = "advisor-secret-7f3a9c"
FAST = {"timeout_s": 2, "memory_mb": 256}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=1)
    level = v.verify("print(1)", stdio_ref("1")).meta.get("isolation")
    if not str(level).startswith("namespace"):  # CI runs as root; a plain user gets the weak fallback
        v.close()
        pytest.skip(f"the namespace sandbox is unavailable here (isolation={level})")
    yield v
    v.close()


@pytest.fixture(autouse=True)
def no_stray_processes():
    yield
    programs, tests = _sandbox_processes()
    # Programs run as even uids and nothing of theirs may survive the verdict. Odd uids are
    # the tests processes: each warm worker keeps one (it never runs candidate code).
    assert programs == [], f"processes outlived the verdict: {programs}"
    assert len(tests) <= 1, f"more tests processes than workers: {tests}"


def _sandbox_processes() -> tuple[list[int], list[int]]:
    programs, tests = [], []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                uid = os.stat(f"/proc/{name}").st_uid
                if uid in SANDBOX_UIDS:
                    (tests if uid % 2 else programs).append(int(name))
    return programs, tests


def call_ref(fn: str, *cases: tuple[list, object], **limits) -> dict:
    return {"mode": "call", "entry_point": fn, "cases": [{"input": i, "output": o} for i, o in cases], "limits": limits}


def stdio_ref(expected: str, **limits) -> dict:
    return {"mode": "stdio", "cases": [{"stdin": "", "stdout": expected}], "limits": {**FAST, **limits}}


ADD_TESTS = {"mode": "assert", "tests": "assert add(1, 2) == 3\nassert add(2, 2) == 4\n", "entry_point": "add"}
ADD_CALL = call_ref("add", ([1, 2], 3), ([2, 2], 4))


# ----------------------------------------------------------------------------- forged verdicts

ALWAYS_EQUAL = """
class Yes:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
def add(a, b):
    return Yes()
"""

INT_SUBCLASS = """
class Int(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = int.__hash__
def add(a, b):
    return Int(0)
"""

STACK_WALK = """
import sys, os
def add(a, b):
    f = sys._getframe(1)
    while f is not None:  # write "passed" into whatever result object the harness holds
        for name, value in list(f.f_locals.items()):
            if isinstance(value, list):
                value.append("passed")
            if isinstance(value, dict):
                value.update(status="pass", passed=True, result="passed")
        f = f.f_back
    print("passed")
    os._exit(0)
"""


@pytest.mark.parametrize(
    "program", [ALWAYS_EQUAL, INT_SUBCLASS, STACK_WALK], ids=["always-eq", "int-subclass", "stack"]
)
@pytest.mark.parametrize("ref", [ADD_TESTS, ADD_CALL], ids=["assert", "call"])
def test_forged_results_fail(verifier, program, ref):
    # a wrong add() that tries to make the harness believe it passed
    v = verifier.verify(program, ref)
    assert not v.passed and v.status in ("fail", "error"), v.reason


def test_shadowing_a_builtin_the_tests_use_fails(verifier):
    # `from operator import neg as abs` would make `abs(got - want) < 1e-6` true for any big answer
    program = "from operator import neg as abs\ndef half(x):\n    return 1000.0\n"
    tests = "assert abs(half(3.0) - 1.5) < 1e-6\n"
    assert verifier.verify(program, {"mode": "assert", "tests": tests, "entry_point": "half"}).status == "fail"


def test_stop_iteration_cannot_end_a_test_loop_early(verifier):
    # raised inside all(map(...)), StopIteration would end the loop as if every case passed
    program = "def add(a, b):\n    raise StopIteration\n"
    tests = "assert all(map(lambda i: add(i, 1) == i + 1, range(10)))\n"
    assert verifier.verify(program, {"mode": "assert", "tests": tests, "entry_point": "add"}).status == "fail"


def test_early_exit_zero_fails_fast(verifier):
    # exit status 0 before any test ran must not read as success, nor stall until the timeout
    for ref in (ADD_TESTS, ADD_CALL):
        t0 = time.monotonic()
        v = verifier.verify(
            "import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n", {**ref, "limits": {"timeout_s": 5}}
        )
        assert not v.passed and v.status == "fail", v.reason
        assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize(
    "patch",
    [
        "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})",
        "import operator\noperator.eq = lambda a, b: True",
        "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None",
    ],
    ids=["builtins", "operator", "unittest"],
)
def test_tampering_is_detected(verifier, patch):
    # the answer is right, but the program tampered with the test machinery
    v = verifier.verify(patch + "\ndef add(a, b):\n    return a + b\n", ADD_TESTS)
    assert v.status == "fail" and "tampered" in v.reason, v.reason


# ----------------------------------------------------------------------------- resources


def test_memory_bomb_is_an_error(verifier):
    v = verifier.verify("x = bytearray(2 << 30)\nx[::4096] = b'1' * len(x[::4096])\nprint(1)", stdio_ref("1"))
    assert v.status == "error", v.reason


def test_many_threads_still_start_under_the_memory_limit(verifier):
    # RLIMIT_AS at 512 MiB lets only ~14 threads start; the cgroup limit does not have that problem
    prog = """
import threading
ev = threading.Event()
ts = [threading.Thread(target=ev.wait) for _ in range(40)]
for t in ts: t.start()
ev.set()
for t in ts: t.join()
print(len(ts))
"""
    assert verifier.verify(prog, stdio_ref("40", memory_mb=512)).passed


def test_output_flood_is_capped(verifier):
    t0 = time.monotonic()
    v = verifier.verify(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", stdio_ref("x", output_limit_bytes=1 << 20)
    )
    assert v.status == "error" and "output limit" in v.reason
    assert time.monotonic() - t0 < 3


def test_sleeping_program_times_out(verifier):
    # RLIMIT_CPU never stops a sleeper: the wall-clock deadline does
    t0 = time.monotonic()
    v = verifier.verify("import time\ntime.sleep(60)", stdio_ref("", timeout_s=1))
    assert v.status == "timeout"
    assert time.monotonic() - t0 < 4


def test_recursion_bomb_is_contained(verifier):
    prog = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1) + 1\nprint(f(0))"
    v = verifier.verify(prog, stdio_ref("0"))
    assert v.status == "error", v.reason
    assert verifier.verify("print(1)", stdio_ref("1")).passed  # the worker still serves


def test_ctypes_segfault_is_an_error(verifier):
    v = verifier.verify("import ctypes\nctypes.string_at(0)", stdio_ref(""))
    assert v.status == "error" and "signal 11" in v.reason


def test_closed_stdout_does_not_confuse_the_harness(verifier):
    prog = "import os\nos.close(1)\nos.close(2)\ndef add(a, b):\n    return a - b\n"
    assert verifier.verify(prog, ADD_TESTS).status == "fail"
    assert verifier.verify(prog.replace("a - b", "a + b"), ADD_TESTS).passed


def test_daemons_and_threads_do_not_outlive_the_run(verifier, tmp_path):
    prog = """
import os, threading, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(30)
    os._exit(0)
threading.Thread(target=time.sleep, args=(30,), daemon=False).start()
def add(a, b):
    return a + b
"""
    assert verifier.verify(prog, ADD_TESTS).passed
    # no_stray_processes (autouse) checks that the daemon and the thread are gone


# ----------------------------------------------------------------------------- files, environment, network


def test_writes_and_deletes_outside_the_workdir_do_not_reach_the_host(verifier, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    prog = f"""
import os, shutil
hits = []
for attempt in (lambda: open({str(canary)!r}, "w").write("pwned"), lambda: os.remove({str(canary)!r}),
                lambda: shutil.rmtree({str(tmp_path)!r}), lambda: open("/usr/pwned", "w"),
                lambda: open("/etc/pwned", "w"), lambda: open({os.getcwd() + "/pwned"!r}, "w")):
    try:
        attempt()
        hits.append(1)
    except OSError:
        pass
print(len(hits))
"""
    assert verifier.verify(prog, stdio_ref("0")).passed
    assert canary.read_text() == "intact"
    assert not os.path.exists(os.path.join(os.getcwd(), "pwned"))


def test_host_secrets_are_out_of_reach(verifier, monkeypatch, tmp_path):
    monkeypatch.setenv("ADVISOR_TEST_SECRET", SECRET)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    prog = f"""
import os
SHOW = {{show}}
seen = [k for k, v in os.environ.items() if {SECRET!r} in v]
for path in ("/etc/shadow", {str(secret_file)!r}, "/proc/1/environ", "/root/.bash_history"):
    try:
        data = open(path, "rb").read().decode("latin-1")
        seen.append(path)
        if SHOW:
            print(data)
    except OSError:
        pass
if SHOW:
    print(os.environ)
print("seen", len(seen))
"""
    v = verifier.verify(prog.format(show=True), stdio_ref("nothing"))
    assert not v.passed and SECRET not in v.reason and "root:" not in v.reason
    ok = verifier.verify(prog.format(show=False), stdio_ref("seen 0"))
    assert ok.passed, ok.reason


def test_no_connection_reaches_a_host_listener(verifier):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept)
    thread.start()
    prog = f"""
import socket
ok = 0
for host in ("127.0.0.1", "localhost", "::1"):
    try:
        socket.create_connection((host, {port}), timeout=1).close()
        ok += 1
    except OSError:
        pass
print(ok)
"""
    v = verifier.verify(prog, stdio_ref("0"))
    time.sleep(0.2)  # a connection that got through would be accepted by now
    stop.set()
    thread.join()
    listener.close()
    assert v.passed, v.reason
    assert accepted == []


def test_killing_the_parent_leaves_the_host_alive(verifier):
    # (getppid() is 0 across the namespace border, and kill(0) would only kill our own group)
    prog = """
import os, signal
targets = {os.getppid(), 1} | {int(p) for p in os.listdir("/proc") if p.isdigit()}
for pid in targets - {0, os.getpid()}:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
print("alive")
"""
    assert verifier.verify(prog, stdio_ref("alive")).passed
    assert verifier.verify("print(2)", stdio_ref("2")).passed  # the worker still serves


# ----------------------------------------------------------------------------- in a PID namespace of their own

RUNNER = """
import json, sys
from verifiers.code import CodeVerifier
v = CodeVerifier(workers=1)
out = [v.verify(p, r).to_dict() for p, r in json.loads(sys.stdin.read())]
out.append(v.verify("print(7)", {"mode": "stdio", "cases": [{"stdin": "", "stdout": "7"}]}).to_dict())
v.close()
print(json.dumps(out))
"""


def _in_own_pid_namespace(pairs: list) -> list[dict]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to contain the test itself")
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", RUNNER]
    proc = subprocess.run(cmd, input=json.dumps(pairs), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kill_everything_is_contained():
    # kill(-1) hits everything the program may signal: the tests process must survive it,
    # so a wrong add() still fails on its merits and a right one still passes
    prog = textwrap.dedent("""
        import os, signal
        def boom():
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:  # ESRCH when nothing else is visible
                pass
        boom()
        def add(a, b):
            boom()
            return a + b
        """)
    wrong = prog.replace("a + b", "a - b")
    out = _in_own_pid_namespace([[wrong, ADD_TESTS], [wrong, ADD_CALL], [prog, ADD_TESTS], [prog, ADD_CALL]])
    assert [r["reason"].split(":")[0] for r in out[:4]] == ["fail", "fail", "pass", "pass"], out
    assert out[-1]["passed"]  # the verifier, and the runner around it, survived


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    limits = {"timeout_s": 2}
    out = _in_own_pid_namespace([[bomb, {"mode": "stdio", "cases": [{"stdin": "", "stdout": ""}], "limits": limits}]])
    assert out[0]["reason"].split(":")[0] in ("timeout", "error"), out
    assert out[-1]["passed"]


def test_fork_bomb_leaves_no_process_on_this_host(verifier):
    # the same bomb on the suite's own verifier (after the contained run proved it safe)
    bomb = textwrap.dedent("""
        import os
        for _ in range(10000):
            try:
                os.fork()
            except OSError:
                pass
        """)
    verifier.verify(bomb, stdio_ref("", timeout_s=2))  # any verdict: the invariants are what matter
    assert verifier.verify("print(3)", stdio_ref("3")).passed
