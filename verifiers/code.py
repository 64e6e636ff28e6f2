"""Code verifier: run model-written Python in a sandbox and judge it against tests.

>>> from verifiers import CodeVerifier
>>> v = CodeVerifier(workers=1)
>>> v.verify("```python\\ndef add(a, b):\\n    return a + b\\n```", "assert add(1, 2) == 3").passed
True
>>> v.verify("def add(a, b): return a - b", {"mode": "call", "entry_point": "add",
...          "cases": [{"input": [1, 2], "output": 3}]}).reason
'fail: case 0: add(1, 2) returned -1, expected 3'

Reference formats (``reference`` may also be a JSON string of these dicts):

* ``{"mode": "assert", "tests": str, "entry_point": str | None}`` (a plain string
  of tests means this mode). HumanEval's ``def check(candidate)`` form is called
  with the entry point when the tests do not call it themselves.
* ``{"mode": "call", "entry_point": str, "cases": [{"input": [...], "output": v}]}``.
  The expected values never enter the sandbox: the host compares them.
* ``{"mode": "stdio", "cases": [{"stdin": str, "stdout": str}]}``, compared with
  trailing whitespace on each line and at the end ignored.
* optional ``"limits": {"timeout_s": 5, "memory_mb": 1024, "output_limit_bytes": 1 MiB}``.

The code is the last fenced Python block of the response, else the whole response.
The status (``verdict.status``, the part of ``reason`` before the colon) is ``pass``,
``fail`` (ran, but wrong: an assertion, a wrong value, an exception raised by the
code under test, an early exit), ``timeout``, ``error`` (the process crashed: a
signal, a non-zero exit in stdio mode, the memory or output limit, code that does
not load) or ``skip`` (the reference cannot be read). ``meta["isolation"]`` says
how the program was isolated.

Isolation, as built by ``verifiers/_sandbox/worker.py`` (root on Linux; level ``namespace+cgroup``):

* **Processes and time.** One warm worker ("zygote") per slot lives in fresh mount,
  network, IPC, UTS and PID namespaces. Each program is forked from it as PID 1
  of a *new* PID namespace, so killing it at the end kills every process the
  run created: daemons, threads and forks cannot outlive the verdict, which is
  sent only after they are reaped. The wall-clock deadline is enforced from
  outside with SIGKILL (``RLIMIT_CPU``, also set, never stops a sleeping
  program), and the host keeps its own, longer deadline on the worker, killing
  it whole when it is late; a worker whose host dies follows it within a second.
  The worker's pids cgroup caps tasks at 128 (``RLIMIT_NPROC`` is ignored for
  root, so programs also run as an unprivileged uid, where it applies).
* **Memory.** The worker's memory cgroup is set to ``memory_mb`` for each run (it
  also holds the ~20 MiB warm interpreter). The program has ``oom_score_adj``
  1000, the tests process and the worker -1000. No ``RLIMIT_AS`` (at 512 MiB it
  lets only ~14 threads start), except where cgroups are missing.
* **Files.** The root is a read-only tmpfs holding read-only binds of ``/usr``,
  ``/lib*``, ``/bin``, ``/sbin``, ``/etc/ld.so.cache`` and the interpreter prefix,
  after ``pivot_root`` has detached the old root. ``/tmp`` (256 MiB) and
  ``/dev/shm`` (64 MiB) are size-capped tmpfs, wiped after each run. The
  workspace, ``/home``, ``/root`` (but the interpreter prefix) and ``/etc`` (but a
  stub passwd, group and hosts) are absent, so ``/etc/shadow`` cannot be read.
  ``/proc`` shows only one's own processes (``hidepid=2,subset=pid``); no ``/sys``.
* **Privileges.** Programs run as a per-worker unprivileged uid, tests as another
  (neither can signal or trace the other), with ``no_new_privs``, no
  capabilities, not dumpable, rlimits on CPU, file size, open files, core dumps
  and processes, a scrubbed environment (the host's never reaches the worker),
  stdin from ``/dev/null`` (or the case's input in stdio mode), own session.
* **Network.** The network namespace has no interfaces but a loopback that is
  down: host listeners on 127.0.0.1 and abstract Unix sockets are unreachable.
* **Output.** Read through pipes and capped while read (``output_limit_bytes``);
  the control channel is length-prefixed JSON, never pickle.
* **Verdict integrity.** Return values cross as plain data: only exact plain
  types (``type(x) is int``, recursively through lists, tuples, sets and dicts)
  can be encoded, so an always-equal object or an ``int`` subclass fails rather
  than passes. In ``call`` mode the host compares (expected values never enter
  the sandbox; by exact type: an int matches only an int, floats within 1e-9
  relative where the expected value is a float, NaN matches NaN). In ``assert`` mode the tests run in
  the worker's tests process (its own uid, outside the run's PID namespace),
  which never runs candidate code, so their builtins, ``unittest`` and
  ``operator`` are the ones captured before the program started, and names the
  program exports never shadow a builtin; the program's functions are proxies
  across a pipe, and a ``StopIteration`` they raise arrives as ``RuntimeError``.
  The tests finish by writing a random per-run nonce on a channel the program
  does not hold; a pass needs that nonce, never an exit status or text on
  stdout, so a program that walks the stack and writes "passed" into a result
  object gains nothing. Tampering with ``builtins``, ``unittest`` or ``operator``
  inside the program is detected (at load and after the last call) and fails
  the run. An early ``os._exit(0)`` closes the channel and fails at once. The
  tests process is replaced after a run that ended without its answer, or whose
  tests patched builtins, left a thread running or changed the recursion limit.

Known gaps:

* No seccomp filter: the kernel's whole syscall surface is reachable, so a kernel
  bug could break out. Programs may create user namespaces where the kernel
  allows it, though only inside the sandbox's own root.
* Only cgroup v1 is driven (``/sys/fs/cgroup/{memory,pids}``, as here). Without
  writable v1 cgroups memory falls back to ``RLIMIT_AS`` and processes to
  ``RLIMIT_NPROC``; the level then reads ``namespace``.
* The ``process`` fallback (no namespaces: a non-root user, a locked-down
  container) is much weaker: a fresh ``python -I -S`` per run with rlimits, a new
  session, and a kill of the group and of every descendant (it is a child
  subreaper), but files, network and the user's other processes are reachable,
  and a non-root program can ``kill(-1)`` every process of that user.
* Programs get the standard library only (the interpreter runs ``-I -S``).
* ``assert`` mode passes only plain data between tests and program: tests that
  hand the program callables or objects, or use classes it defines, fail;
  in-place changes to list, dict and set arguments are mirrored back. Helper
  functions the tests call (``poly`` in HumanEval/32) come from the program too,
  so a program may rewrite them: such tests trust the program by design.
* The pids cap counts zombies: a program that leaves many unreaped children can
  starve itself of processes (only itself).
* A host process killed with SIGKILL leaves empty cgroup directories behind; the
  next pool removes them after a minute.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from verifiers._sandbox import child as wire
from verifiers._sandbox.host import SandboxPool, SandboxUnavailable
from verifiers.base import BatchedVerifier, Verdict, default_workers, failed, passed, skipped

DEFAULT_LIMITS = {"timeout_s": 5.0, "memory_mb": 1024, "output_limit_bytes": 1 << 20}
HOST_GRACE_S = 10.0  # the host's deadline on a worker, beyond the run's own

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(response: str) -> str:
    """The last fenced Python (or untagged) block, else the whole response."""
    blocks = [body for lang, body in _FENCE.findall(response or "") if lang.lower() in ("", "python", "py", "python3")]
    return blocks[-1] if blocks else (response or "")


def parse_reference(reference: Any) -> dict:
    """Normalise a reference to a dict with a mode; raises ValueError when unreadable."""
    if isinstance(reference, str):
        text = reference.strip()
        if text.startswith("{"):
            try:
                reference = json.loads(text)
            except json.JSONDecodeError:
                reference = {"mode": "assert", "tests": reference}
        else:
            reference = {"mode": "assert", "tests": reference}
    if not isinstance(reference, dict):
        raise ValueError(f"reference must be a dict or a string, not {type(reference).__name__}")
    mode = reference.get("mode", "assert" if "tests" in reference else None)
    if mode == "assert":
        if not isinstance(reference.get("tests"), str) or not reference["tests"].strip():
            raise ValueError("assert mode needs a non-empty 'tests' string")
    elif mode in ("call", "stdio"):
        cases = reference.get("cases")
        if not isinstance(cases, list) or not cases:
            raise ValueError(f"{mode} mode needs a non-empty 'cases' list")
        if mode == "call" and not isinstance(reference.get("entry_point"), str):
            raise ValueError("call mode needs an 'entry_point'")
        for i, case in enumerate(cases):
            keys = ("input", "output") if mode == "call" else ("stdin", "stdout")
            if not isinstance(case, dict) or any(k not in case for k in keys):
                raise ValueError(f"cases[{i}] needs {' and '.join(keys)}")
            if mode == "call" and not isinstance(case["input"], list):
                raise ValueError(f"cases[{i}].input must be a list of arguments")
    else:
        raise ValueError(f"unknown mode {mode!r} (assert, call or stdio)")
    limits = dict(DEFAULT_LIMITS)
    for key, value in (reference.get("limits") or {}).items():
        if key not in limits or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"limits.{key}: unknown or not a positive number")
        limits[key] = value
    return {**reference, "mode": mode, "limits": limits}


def same_value(got: Any, expected: Any) -> bool:
    """Host-side equality on decoded plain data, by exact type.

    An ``int`` expected value matches only an ``int`` (``1e12`` is not
    ``10**12 + 7``, nor ``1000000006.0`` ``1000000007``); a ``float`` expected
    value matches an ``int`` or ``float`` within 1e-9 relative (1e-12 absolute),
    and NaN matches NaN; ``bool`` only ``bool``. Ints of any size compare
    exactly, with no string conversion. JSON has no tuples: a tuple may match a
    list.
    """
    tg, te = type(got), type(expected)
    if tg is bool or te is bool:
        return tg is te and got == expected
    if te is int:
        return tg is int and got == expected
    if te is float:
        if tg is int:
            got = float(got) if abs(got) < 2**1023 else math.inf
        elif tg is not float:
            return False
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        return got == expected or (math.isfinite(got) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12))
    if te is list and tg in (list, tuple) or te is tuple and tg is tuple:
        return len(got) == len(expected) and all(same_value(g, e) for g, e in zip(got, expected, strict=False))
    if te is dict and tg is dict:
        return got.keys() == expected.keys() and all(same_value(got[k], expected[k]) for k in got)
    return tg is te and got == expected


def normalize_output(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def _short(value: Any, n: int = 80) -> str:
    if type(value) is int and value.bit_length() > 256:  # repr of a huge int hits Python's digit limit
        return f"<int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except ValueError:  # a huge int inside a container
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= n else text[: n - 3] + "..."


def _crash(raw: dict, limits: dict) -> Verdict | None:
    """The process-level outcomes shared by every mode, or None."""
    if raw.get("internal_error"):
        return failed("error", f"sandbox failure: {raw['internal_error']}")
    if raw.get("timeout"):
        return failed("timeout", f"no result within {limits['timeout_s']:g} s")
    if raw.get("output_exceeded"):
        return failed("error", f"output limit of {int(limits['output_limit_bytes'])} bytes exceeded")
    if raw.get("oom"):
        return failed("error", f"memory limit of {int(limits['memory_mb'])} MiB exceeded")
    status = raw.get("exit")
    if status and status[1] is not None:
        return failed("error", f"crashed with signal {status[1]}")
    return None


class CodeVerifier(BatchedVerifier):
    """Runs model-written Python against tests in a sandbox (see the module docstring).

    Args:
        workers: Sandbox slots, one warm worker each (default: one per core).
        isolation: ``"auto"`` (namespaces where possible, else processes, with a
            warning), ``"namespace"`` (raise where unavailable) or ``"process"``.
        recycle_after: Jobs a worker runs before it is replaced by a fresh one.

    ``as_reward`` reads the reference column as dicts or JSON strings and uses
    every slot by default::

        reward = CodeVerifier().as_reward(reference_field="tests")
        ref = '{"mode": "call", "entry_point": "f", "cases": [{"input": [], "output": 1}]}'
        reward(completions=["def f():\\n    return 1"], tests=[ref])  # -> [1.0]
    """

    name = "code"

    def __init__(self, workers: int | None = None, isolation: str = "auto", recycle_after: int = 500):
        self.workers = self.reward_workers = workers or default_workers()
        self.isolation = isolation
        self._pool = SandboxPool(self.workers, isolation, recycle_after)  # thread-safe; lazy

    # ---------------------------------------------------------------- public API

    def verify(self, response: str, reference: Any) -> Verdict:
        """Judge one response. Never raises on model output; never hangs."""
        try:
            ref = parse_reference(reference)
        except (ValueError, TypeError) as exc:
            return skipped(f"unreadable reference: {exc}")
        code = extract_code(response if isinstance(response, str) else str(response))
        try:
            verdict, level = getattr(self, f"_verify_{ref['mode']}")(code, ref)
        except SandboxUnavailable:  # isolation="namespace" where it cannot be had: unsupported
            raise
        except Exception as exc:  # a verifier bug is an error outcome, never a crash
            return failed("error", f"verifier failure: {type(exc).__name__}: {exc}", extracted=code)
        return Verdict(verdict.passed, verdict.score, verdict.reason, code, {**verdict.meta, "isolation": level})

    def verify_batch(
        self, responses: Sequence[str], references: Sequence[Any], workers: int | None = None
    ) -> list[Verdict]:
        """Verify pairs on the pool, order kept."""
        if len(responses) != len(references):
            raise ValueError(f"{len(responses)} responses but {len(references)} references")
        n = min(workers or self.workers, self.workers, max(1, len(responses)))
        if n <= 1:
            return [self.verify(r, ref) for r, ref in zip(responses, references, strict=False)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(self.verify, responses, references))

    def close(self) -> None:
        """Stop the workers now (they also stop at interpreter exit)."""
        self._pool.close()

    # ---------------------------------------------------------------- modes

    def _job(self, code: str, ref: dict, **fields: Any) -> dict:
        limits = ref["limits"]
        return {
            "code": code,
            "timeout": float(limits["timeout_s"]),
            "memory_mb": int(limits["memory_mb"]),
            "output_limit": int(limits["output_limit_bytes"]),
            **fields,
        }

    def _verify_assert(self, code: str, ref: dict) -> tuple[Verdict, str]:
        nonce = secrets.token_hex(16)
        job = self._job(code, ref, mode="assert", tests=ref["tests"], entry_point=ref.get("entry_point"), nonce=nonce)
        raw, level = self._pool.run(job, ref["limits"]["timeout_s"] + HOST_GRACE_S)
        crash = _crash(raw, ref["limits"])
        if crash:
            return crash, level
        result = raw.get("tests") if isinstance(raw.get("tests"), dict) else {}
        status, detail = result.get("status"), str(result.get("detail", ""))
        if status == "pass" and secrets.compare_digest(str(result.get("nonce", "")), nonce):
            return passed("all tests passed", elapsed_s=raw.get("elapsed")), level
        if status == "load_error":
            return failed("error", f"the program does not load: {detail}"), level
        if status in ("fail", "forged"):
            return failed("fail", detail), level
        # The program ended (as PID 1 its exit also ends the tests process) before a result.
        exit_ = raw.get("exit") or [None, None]
        if exit_[0]:
            return failed("error", f"the program exited with status {exit_[0]} during the tests"), level
        if status == "gone" or exit_[0] == 0:
            return failed("fail", "the program exited before the tests finished"), level
        return failed("error", "the tests did not report a result"), level

    def _verify_call(self, code: str, ref: dict) -> tuple[Verdict, str]:
        entry, cases = ref["entry_point"], ref["cases"]
        try:
            calls = [wire.encode(tuple(case["input"])) for case in cases]
        except (TypeError, ValueError) as exc:
            return skipped(f"call inputs are not plain data: {exc}"), "none"
        job = self._job(code, ref, mode="call", entry_point=entry, calls=calls)
        wait = ref["limits"]["timeout_s"] * (len(cases) + 1) + HOST_GRACE_S
        raw, level = self._pool.run(job, wait)
        replies = raw.get("replies") or []
        ready = replies[0] if replies and isinstance(replies[0], dict) else {}
        if "load_error" in ready:
            return failed("error", f"the program does not load: {ready['load_error']}"), level
        if ready.get("tampered"):
            return failed("fail", f"the program tampered with {ready['tampered']}"), level
        if ready and entry not in (ready.get("ready") or {}).get("funcs", []):
            return failed("error", f"the program defines no function {entry!r}"), level
        for i, case in enumerate(cases):
            call = f"{entry}({', '.join(_short(a, 40) for a in case['input'])})"
            if i + 1 >= len(replies):
                crash = _crash(raw, ref["limits"])
                if crash:
                    return Verdict(False, 0.0, f"{crash.reason} (case {i})", None, {}), level
                return failed("fail", f"case {i}: the program exited before {call} returned"), level
            reply = replies[i + 1]
            if not isinstance(reply, dict) or reply.get("malformed"):
                return failed("fail", f"case {i}: malformed reply"), level
            if reply.get("tampered"):
                return failed("fail", f"case {i}: the program tampered with {reply['tampered']}"), level
            if "forged" in reply:
                return failed("fail", f"case {i}: {call} returned a non-plain value: {reply['forged']}"), level
            if "raise" in reply:
                return failed("fail", f"case {i}: {call} raised {reply.get('msg', reply['raise'])}"), level
            try:
                got = wire.decode(reply.get("ok"))
            except (ValueError, TypeError):
                return failed("fail", f"case {i}: malformed reply"), level
            if not same_value(got, case["output"]):
                return failed(
                    "fail", f"case {i}: {call} returned {_short(got)}, expected {_short(case['output'])}"
                ), level
        final = replies[len(cases) + 1] if len(replies) > len(cases) + 1 else None
        if not isinstance(final, dict) or "tampered" not in final:
            return failed("fail", "the program exited before the final check"), level
        if final["tampered"]:
            return failed("fail", f"the program tampered with {final['tampered']}"), level
        return passed(f"{len(cases)} cases", elapsed_s=raw.get("elapsed")), level

    def _verify_stdio(self, code: str, ref: dict) -> tuple[Verdict, str]:
        level = "none"
        elapsed = 0.0
        for i, case in enumerate(ref["cases"]):
            job = self._job(code, ref, mode="stdio", stdin=str(case["stdin"]))
            raw, level = self._pool.run(job, ref["limits"]["timeout_s"] + HOST_GRACE_S)
            elapsed += raw.get("elapsed") or 0.0
            crash = _crash(raw, ref["limits"])
            if crash:
                return Verdict(False, 0.0, f"{crash.reason} (case {i})", None, {}), level
            exit_ = raw.get("exit") or [None, None]
            if exit_[0]:
                tail = (raw.get("stderr") or "").strip().splitlines()[-1:] or [""]
                return failed("error", f"case {i}: exit status {exit_[0]}: {tail[0][:200]}"), level
            got, want = normalize_output(raw.get("stdout", "")), normalize_output(str(case["stdout"]))
            if got != want:
                return failed("fail", f"case {i}: printed {_short(got)}, expected {_short(want)}"), level
        return passed(f"{len(ref['cases'])} cases", elapsed_s=round(elapsed, 4)), level
