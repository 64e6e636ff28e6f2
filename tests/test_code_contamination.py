"""One run must never leak into the next: each hostile run is followed, on the same
one-slot verifier, by a benign run that must pass.

Also the call-mode comparison by exact type, and fork safety of the host pool.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

from verifiers._sandbox import root
from verifiers.code import CodeVerifier, same_value

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

FAST = {"timeout_s": 5, "memory_mb": 256}


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=1)
    level = v.verify("print(1)", stdio("1")).meta.get("isolation")
    if not str(level).startswith("namespace"):
        v.close()
        pytest.skip(f"the namespace sandbox is unavailable here (isolation={level})")
    yield v
    v.close()


def stdio(expected: str, **limits) -> dict:
    return {"mode": "stdio", "cases": [{"stdin": "", "stdout": expected}], "limits": {**FAST, **limits}}


SYSV = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
"""

# (id, hostile program, its reference, benign follow-up, its reference, why)
CONTAMINATION = [
    (
        "deep_tree",
        "import os\nfor _ in range(1200):\n    os.mkdir('d'); os.chdir('d')\nprint('built')",
        stdio("built"),
        "import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')) == ['work'])",
        stdio("[] True"),
        "the wipe recursed and broke the worker for every later run; now a flat loop of any depth",
    ),
    (
        "sysv_shm_memory",
        SYSV + "seg = libc.shmget(0, 300 << 20, 0o1600)\n"
        "addr = libc.shmat(seg, None, 0)\nctypes.memset(addr, 1, 300 << 20)\nprint('left', seg >= 0)",
        stdio("left True", memory_mb=600),
        "x = bytearray(400 << 20)\nprint(len(x) >> 20)",
        stdio("400", memory_mb=600),
        "a leftover segment stayed charged to the worker's cgroup; each run now has its own IPC namespace",
    ),
    (
        "sysv_message_queue",
        SYSV + "q = libc.msgget(0x5eed, 0o1666)\n"
        "buf = ctypes.create_string_buffer(b'\\x01\\0\\0\\0\\0\\0\\0\\0secret-from-run-1')\n"
        "print(libc.msgsnd(q, buf, 17, 0) == 0)",
        stdio("True"),
        SYSV + "print('clean' if libc.msgget(0x5eed, 0) < 0 else 'leaked')",
        stdio("clean"),
        "a queue carried data from one candidate to the next",
    ),
    (
        "session_keyring",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.syscall(248, b'user', b'carry', b'secret', 6, -3) > 0)",  # add_key to @s
        stdio("True"),
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('clean' if libc.syscall(249, b'user', b'carry', None, 0) < 0 else 'leaked')",  # request_key
        stdio("clean"),
        "the session keyring was shared by every run of a worker",
    ),
]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers in the programs are x86_64's")
@pytest.mark.parametrize(
    ("hostile", "h_ref", "benign", "b_ref", "why"), [c[1:] for c in CONTAMINATION], ids=[c[0] for c in CONTAMINATION]
)
def test_a_hostile_run_does_not_reach_the_next(verifier, hostile, h_ref, benign, b_ref, why):
    first = verifier.verify(hostile, h_ref)
    assert first.passed, (why, first.reason)  # the hostile part really ran
    follow = verifier.verify(benign, b_ref)
    assert follow.passed, (why, follow.reason)
    assert verifier.verify("print(2)", stdio("2")).passed, why


def test_wipe_removes_a_tree_of_any_depth(tmp_path):
    top = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.dup(top)
        for _ in range(3000):  # far past the recursion limit and PATH_MAX
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write("x")
        os.chmod(fd, 0)  # unreadable: the wipe runs as root in the worker, and fixes modes first
        os.close(fd)
    finally:
        os.close(top)
    (tmp_path / "link").symlink_to("/etc")  # removed, never followed
    assert root.wipe((str(tmp_path),)) is True
    assert os.listdir(tmp_path) == []
    assert os.path.isdir("/etc")


# (id, returned, expected, matches, why)
SAME_VALUE = [
    ("int_vs_close_float", 1000000006.0, 1000000007, False, "a float never matches an int"),
    ("int_vs_float_of_it", 1e12, 10**12 + 7, False, "float rounding hides the +7"),
    ("int_vs_equal_float", 3.0, 3, False, "int only matches int"),
    ("float_vs_int", 3, 3.0, True, "an int is a fine answer where a float is expected"),
    ("float_tolerance", 0.1 + 0.2, 0.3, True, "tolerance where the expected value is a float"),
    ("float_too_far", 0.3001, 0.3, False, "beyond 1e-9 relative"),
    ("nan_matches_nan", math.nan, math.nan, True, "NaN is the right answer when NaN is expected"),
    ("nan_vs_number", math.nan, 1.0, False, "NaN matches nothing else"),
    ("number_vs_nan", 1.0, math.nan, False, "NaN matches nothing else"),
    ("bool_vs_int", True, 1, False, "bool only matches bool"),
    ("huge_equal", 10**5000 + 1, 10**5000 + 1, True, "huge ints compare exactly, no string conversion"),
    ("huge_off_by_one", 10**5000, 10**5000 + 1, False, "exact, however large"),
    ("huge_vs_float", 1e300, 10**300, False, "int only matches int"),
    ("nested_types", [1, (2.0, 3)], [1, (2, 3)], False, "exact types inside containers too"),
    ("tuple_for_list", (1, 2), [1, 2], True, "JSON has no tuples"),
]


@pytest.mark.parametrize(("got", "expected", "ok", "why"), [c[1:] for c in SAME_VALUE], ids=[c[0] for c in SAME_VALUE])
def test_call_mode_compares_by_exact_type(got, expected, ok, why):
    assert same_value(got, expected) is ok, why


def call(entry: str, output: object) -> dict:
    return {"mode": "call", "entry_point": entry, "cases": [{"input": [], "output": output}], "limits": FAST}


@pytest.mark.parametrize(
    ("program", "expected", "status", "why"),
    [
        ("def f():\n    return 1000000006.0", 1000000007, "fail", "close float for an int"),
        ("def f():\n    return 1e12", 10**12 + 7, "fail", "float for an int"),
        ("def f():\n    return 10**5000 + 1", 10**5000 + 1, "pass", "a huge int crosses and compares"),
        ("def f():\n    return 10**5000", 10**5000 + 1, "fail", "a wrong huge int is a fail, not an error"),
        ("def f():\n    return float('nan')", math.nan, "pass", "NaN expected"),
    ],
    ids=["close_float", "float_for_int", "huge_int", "huge_int_wrong", "nan"],
)
def test_call_mode_types_end_to_end(verifier, program, expected, status, why):
    v = verifier.verify(program, call("f", expected))
    assert v.status == status, (why, v.reason)
    assert verifier.verify("def f():\n    return 7", call("f", 7)).passed, why


FORK_SCRIPT = """
import os, sys, threading, time
from verifiers.code import CodeVerifier
v = CodeVerifier(workers=1)
slow = {"mode": "stdio", "cases": [{"stdin": "", "stdout": "slow"}], "limits": {"timeout_s": 10}}
quick = {"mode": "stdio", "cases": [{"stdin": "", "stdout": "child"}], "limits": {"timeout_s": 10}}
assert v.verify("print('slow')", slow).passed  # a warm worker in the parent
out = {}
t = threading.Thread(target=lambda: out.update(v=v.verify("import time; time.sleep(1.5); print('slow')", slow)))
t.start()
time.sleep(0.5)  # the thread is inside verify, holding the only slot
pid = os.fork()
if pid == 0:
    ok = v.verify("print('child')", quick).passed  # its own pool: no wait on the parent's slot
    v.close()
    sys.exit(0 if ok else 3)  # a normal exit: atexit runs in the child
_, status = os.waitpid(pid, 0)
t.join()
after = v.verify("print('slow')", slow)
print("child", os.waitstatus_to_exitcode(status), "parent", out["v"].passed, "after", after.passed)
v.close()
"""


def test_fork_while_verifying_gives_the_child_its_own_pool():
    # the child used to hang on the parent's slot, and its atexit closed the parent's workers
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stdout.strip().splitlines()[-1:] == ["child 0 parent True after True"], proc.stdout + proc.stderr
