"""The tests role of the code sandbox: reference tests against proxies of the program.

Runs as its own uid in a process where no candidate code ever runs (see
``child.py`` for the wire format and the candidate role). In namespace
mode one long-lived ``tests_server`` per worker serves run after run; in process
mode ``tests_main`` serves one run. Stdlib only; loaded by path in the worker.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import os
import re
import signal
import socket
import sys
import threading
import traceback

try:  # in the worker, the sibling was loaded by path under its bare name
    import _sandbox_child as wire
except ImportError:  # pragma: no cover - imported from the package
    from verifiers._sandbox import child as wire

_CALLS_CHECK = re.compile(r"^check\s*\(", re.M)  # the tests call check() themselves
_BUILTIN_NAMES = frozenset(builtins.__dict__)


# ----------------------------------------------------------------------------- tests role


class CandidateGone(BaseException):
    """The candidate process closed its channel (exited, crashed or was killed)."""


class ForgedValue(BaseException):
    """The candidate returned something that is not plain data, or tampered."""


def _namespace_for_tests(exports: dict, entry_point: str | None, proxy) -> dict:
    """The tests' globals: the program's names, never shadowing a builtin or a dunder.

    A program that exported ``abs`` (as ``operator.neg``, say) could otherwise bend
    ``assert abs(got - want) < 1e-6``; the tests keep the builtins they started with.
    """

    def allowed(key: object) -> bool:
        return type(key) is str and key.isidentifier() and not key.startswith("__") and key not in _BUILTIN_NAMES

    g: dict = {"__name__": "__main__", "__builtins__": builtins}
    for key, pair in dict(exports.get("imports", {})).items():
        module, qual = str(pair[0]), str(pair[1])
        if not allowed(key) or module.partition(".")[0] not in sys.stdlib_module_names:
            continue
        try:
            obj = importlib.import_module(module)
            for part in qual.split(".") if qual else ():
                obj = getattr(obj, part)
            g[key] = obj
        except Exception:
            pass
    for key, value in dict(exports.get("values", {})).items():
        if allowed(key):
            with contextlib.suppress(ValueError):
                g[key] = wire.decode(value)
    for key in list(exports.get("funcs", [])):
        if allowed(key) or key == entry_point:
            g[key] = proxy(str(key))
    return g


# Exceptions that steer control flow rather than report an error: a program that
# raised StopIteration inside ``all(map(...))`` would end the loop as if it passed.
_NOT_FORWARDED = ("StopIteration", "StopAsyncIteration")


def _builtin_exception(name: str, msg: str) -> BaseException:
    cls = getattr(builtins, name, None) if name not in _NOT_FORWARDED else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(msg)
        except BaseException:
            pass
    return RuntimeError(msg)


def _sync_mutations(before: tuple, after: object) -> None:
    """Mirror in-place changes the candidate made to list/dict/set arguments."""
    if type(after) is not tuple or len(after) != len(before):
        return
    for old, new in zip(before, after, strict=False):
        if type(old) is list and type(new) is list and old != new:
            old[:] = new
        elif (
            type(old) is dict
            and type(new) is dict
            and old != new
            or type(old) is set
            and type(new) is set
            and old != new
        ):
            old.clear()
            old.update(new)


class _Finished(Exception):  # noqa: N818 - control flow inside run_tests only
    def __init__(self, status: str, detail: str = "", **extra: object):
        super().__init__(status)
        self.result = {"status": status, "detail": detail[:1000], **extra}


def tests_main(tests: str, entry_point: str | None, nonce: str) -> None:
    """One-shot tests process (process mode): fds 3 replies, 4 requests, 5 result."""
    wire.send(5, run_tests(tests, entry_point, nonce, 3, 4))
    os._exit(0)


def tests_server(sock_fd: int) -> None:
    """Long-lived tests process (namespace mode): one job after another, never candidate code.

    Each job arrives as a 1-byte message carrying three fds (replies, requests,
    result) and then a JSON frame ``{"tests", "entry_point", "nonce"}``.
    """
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a vanished run must not end the server
    sock = socket.socket(fileno=sock_fd)
    pristine, limit = wire.snapshot(), sys.getrecursionlimit()
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(sock, 1, 3)
            job = wire.recv(sock_fd)
        except (EOFError, OSError, ValueError):
            os._exit(0)
        if len(fds) != 3:
            os._exit(1)
        replies, requests, result = fds
        try:
            outcome = run_tests(job["tests"], job.get("entry_point"), job["nonce"], replies, requests)
            # Tests are reference code, but one that patched builtins, left a thread running or
            # raised the recursion limit must not colour the next run: retire, a fresh one starts.
            retire = wire.tampered(pristine, ("<candidate>", "<tests>")) or sys.getrecursionlimit() != limit
            retire = retire or threading.active_count() > 1
            with contextlib.suppress(OSError):
                wire.send(result, {**outcome, "retire": bool(retire)})
        finally:
            for fd in fds:
                os.close(fd)
        if retire:
            os._exit(0)


def run_tests(tests: str, entry_point: str | None, nonce: str, rfd: int, wfd: int) -> dict:
    """Run reference tests against proxies of the candidate (replies on ``rfd``, requests on ``wfd``).

    Returns ``{"status": "pass", "nonce": ...}`` only when every test ran to the end.
    """
    try:
        _run_tests(tests, entry_point, nonce, rfd, wfd)
    except _Finished as done:
        return done.result
    return {"status": "error", "detail": "the tests ended without a verdict"}


def _run_tests(tests: str, entry_point: str | None, nonce: str, rfd: int, wfd: int) -> None:
    def finish(status: str, detail: str = "", **extra: object) -> None:
        raise _Finished(status, detail, **extra)

    def receive() -> dict:
        try:
            reply = wire.recv(rfd)
        except (EOFError, OSError, ValueError) as exc:
            raise CandidateGone(str(exc)) from None
        if not isinstance(reply, dict):
            raise ForgedValue("malformed reply")
        if reply.get("tampered"):
            raise ForgedValue(f"candidate tampered with {reply['tampered']}")
        return reply

    try:
        ready = receive()
    except CandidateGone:
        finish("gone", "candidate exited while loading")
    except ForgedValue as exc:
        finish("forged", str(exc))
    if "load_error" in ready:
        finish("load_error", str(ready["load_error"]))
    exports = ready.get("ready") or {}

    def proxy(name: str):
        def call(*args, **kwargs):
            try:
                wire.send(wfd, {"fn": name, "args": wire.encode(args), "kwargs": wire.encode(kwargs)})
            except (TypeError, ValueError) as exc:
                raise TypeError(f"argument cannot cross the sandbox: {exc}") from None
            except OSError:
                raise CandidateGone("candidate closed its request channel") from None
            reply = receive()
            if "forged" in reply:
                raise ForgedValue(f"{name}() returned a non-plain value: {reply['forged']}")
            if "raise" in reply:
                raise _builtin_exception(str(reply["raise"]), str(reply.get("msg", "")))
            try:
                value = wire.decode(reply["ok"])
                if "args" in reply:
                    _sync_mutations(args, wire.decode(reply["args"]))
            except (KeyError, ValueError, TypeError) as exc:
                raise ForgedValue(f"malformed reply from {name}(): {exc}") from None
            return value

        call.__name__ = call.__qualname__ = name
        return call

    try:
        g = _namespace_for_tests(exports, entry_point, proxy)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        finish("forged", f"malformed exports: {exc}")
    if entry_point and entry_point not in g:
        finish("load_error", f"the program defines no function {entry_point!r}")
    try:
        exec(compile(tests, "<tests>", "exec"), g)
        if entry_point and callable(g.get("check")) and not _CALLS_CHECK.search(tests):
            g["check"](g[entry_point])
        wire.send(wfd, {"fn": None})  # the candidate's last tamper check
        receive()
    except _Finished:
        raise
    except CandidateGone as exc:
        finish("gone", str(exc))
    except ForgedValue as exc:
        finish("forged", str(exc))
    except AssertionError as exc:
        finish("fail", "assertion failed" + _where(exc, tests))
    except BaseException as exc:
        finish("fail", wire.describe(exc) + _where(exc, tests))
    finish("pass", "", nonce=nonce)


def _where(exc: BaseException, tests: str) -> str:
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<tests>":
            line = lineno
    if line is None:
        return ""
    lines = tests.splitlines()
    src = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return f" at tests line {line}: {src[:200]}"
