"""Long-lived worker processes that run sympy work under a hard wall-clock limit.

Why processes: a ``signal.alarm`` only works on the main thread and cannot
interrupt C-level work (``2**(2**65536)`` inside CPython's integer power), so
the only reliable limit is a separate process that is killed with SIGKILL.

How: one "zygote" per pool is started with ``subprocess`` (``python -c``, so
the caller's main module is never re-imported and its threads and locks are
never forked). The zygote imports sympy once and then forks a worker on
request, passing the parent one end of a socket pair, so a fresh worker is
ready in milliseconds (and, since the zygote judged a few warm-up pairs,
starts with sympy's caches warm). Each worker caps its address space with
``RLIMIT_AS``, dies with the zygote (``PR_SET_PDEATHSIG``; the zygote itself
exits when its control socket to the parent closes), and answers one JSON
line per request. The parent waits with ``select`` on a deadline; on timeout
it sends SIGKILL and forks a fresh worker. A pool hands one worker to one caller at a time (a
queue), so any number of threads may call at once. Pools are rebuilt after
``fork`` and shut down at exit. Where the zygote cannot run (no
``socket.send_fds``), workers are started directly with ``subprocess``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: How long a fresh worker (or the zygote) may take to start before the call errors.
STARTUP_S = 60.0


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _serve(read_fd: int, write_fd: int, mem_mb: int, engine: Any) -> None:
    """A worker's loop: one JSON request per line in, one JSON answer per line out."""
    if mem_mb > 0:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (mem_mb * 2**20, mem_mb * 2**20))
        except (ImportError, ValueError, OSError):
            pass
    sys.setrecursionlimit(3000)
    reader = os.fdopen(read_fd, "rb")
    writer = os.fdopen(write_fd, "wb")
    _reply(writer, {"ready": True})
    for line in reader:
        try:
            req = json.loads(line)
            items = req["items"] if req.get("op") == "many" else [req]
        except Exception as exc:
            items = []
            _reply(writer, ["error", f"bad request: {exc}", None])
        for item in items:
            _reply(writer, _handle(item, engine))
    os._exit(0)


def serve_stdio() -> None:  # entry point of a directly started worker (exits on EOF)
    from verifiers._math import equal as _mathequal

    _serve(0, 1, int(os.environ.get("ADVISOR_MATH_MEM_MB", "0")), _mathequal)


def zygote() -> None:  # entry point of the zygote
    # No PR_SET_PDEATHSIG here: it fires when the *thread* that started us exits,
    # and callers may start the pool from a short-lived thread. The zygote idles
    # in recv() on its control socket instead, which returns b"" when the parent dies.
    from verifiers._math import equal as _mathequal

    _mathequal.warm_up()  # forked workers inherit warm sympy caches
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished workers
    control = socket.socket(fileno=int(os.environ["ADVISOR_MATH_CONTROL_FD"]))
    mem_mb = int(os.environ.get("ADVISOR_MATH_MEM_MB", "0"))
    control.sendall(b"R")
    while True:
        try:
            cmd = control.recv(1)
        except OSError:
            os._exit(0)
        if not cmd:
            os._exit(0)
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            control.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _die_with_parent()
            try:
                fd = theirs.detach()
                _serve(os.dup(fd), fd, mem_mb, _mathequal)
            finally:
                os._exit(0)
        theirs.close()
        socket.send_fds(control, [pid.to_bytes(8, "little")], [ours.fileno()])
        ours.close()


def _handle(req: dict[str, Any], engine: Any) -> list[Any]:
    try:
        if req["op"] == "judge":
            status, detail = engine.judge(req["candidates"], req["gold"])
            return [status, detail, None]
        return list(engine.judge_pair(req["response"], req["reference"], req["fallback"]))
    except MemoryError:
        return ["too_large", "memory limit reached while parsing", None]
    except RecursionError:
        return ["too_large", "expression nested too deeply", None]
    except Exception as exc:
        return ["error", f"{type(exc).__name__}: {exc}"[:300], None]


def _reply(writer: Any, res: Any) -> None:
    try:
        writer.write(json.dumps(res).encode() + b"\n")
        writer.flush()
    except MemoryError:
        os._exit(3)
    except OSError:
        os._exit(0)


def _env(mem_mb: int) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding verifiers/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["ADVISOR_MATH_MEM_MB"] = str(mem_mb)
    return env


class Zygote:
    """The process that forks workers with sympy already imported."""

    def __init__(self, mem_mb: int):
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair()
        env = _env(mem_mb)
        env["ADVISOR_MATH_CONTROL_FD"] = str(theirs.fileno())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from verifiers._math.worker import zygote; zygote()"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            pass_fds=[theirs.fileno()],
            start_new_session=True,  # a Ctrl-C in the terminal interrupts the caller, not the workers
        )
        theirs.close()
        self.control = ours
        self.ready = False

    def fork(self) -> tuple[int, int]:
        """A new worker: (pid, fd of our end of its socket)."""
        with self.lock:
            if not self.ready:
                self.control.settimeout(STARTUP_S)
                if self.control.recv(1) != b"R":
                    raise RuntimeError("math zygote did not start")
                self.ready = True
            self.control.settimeout(STARTUP_S)
            self.control.sendall(b"F")
            msg, fds, _, _ = socket.recv_fds(self.control, 8, 1)
            if len(msg) != 8 or len(fds) != 1:
                raise RuntimeError("math zygote failed to fork")
            return int.from_bytes(msg, "little"), fds[0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            self.control.close()
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass


class Worker:
    """One worker process; not thread-safe (the pool gives it to one caller at a time)."""

    def __init__(self, mem_mb: int, zygote: Zygote | None):
        self.popen: subprocess.Popen[bytes] | None = None
        if zygote is not None:
            self.pid, self.fd = zygote.fork()
        else:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", "from verifiers._math.worker import serve_stdio; serve_stdio()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_env(mem_mb),
                start_new_session=True,
            )
            self.pid = self.popen.pid
            self.fd = -1
        self.buf = b""
        self.ready = False
        self.dead = False

    def _write(self, data: bytes) -> None:
        if self.popen is not None:
            self.popen.stdin.write(data)  # type: ignore[union-attr]
            self.popen.stdin.flush()  # type: ignore[union-attr]
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def _readline(self, deadline: float) -> bytes | None:
        fd = self.popen.stdout.fileno() if self.popen is not None else self.fd  # type: ignore[union-attr]
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("worker exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def call(self, requests: list[dict[str, Any]], timeout_s: float) -> list[list[Any] | None]:
        """Answers in order, each within ``timeout_s`` of the previous one.

        The list stops at the first request that ran past the limit, marked
        None; the worker is then dead and the rest were not run.
        """
        if not self.ready:
            if self._readline(time.monotonic() + STARTUP_S) is None:
                self.kill()
                raise RuntimeError("math worker did not start")
            self.ready = True
        msg = requests[0] if len(requests) == 1 else {"op": "many", "items": requests}
        self._write(json.dumps(msg).encode() + b"\n")
        out: list[list[Any] | None] = []
        for _ in requests:
            line = self._readline(time.monotonic() + timeout_s)
            if line is None:
                self.kill()
                out.append(None)
                break
            out.append(json.loads(line))
        return out

    def alive(self) -> bool:
        if self.dead:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.dead:
            return
        self.dead = True
        try:
            if self.popen is not None:
                self.popen.kill()
                self.popen.wait(timeout=5)
                for stream in (self.popen.stdin, self.popen.stdout):
                    stream.close()  # type: ignore[union-attr]
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.close(self.fd)
        except Exception:
            pass


class Pool:
    """Workers shared by threads; grows on demand up to the size asked for."""

    def __init__(self, mem_mb: int):
        self.mem_mb = mem_mb
        self.idle: queue.LifoQueue[Worker] = queue.LifoQueue()
        self.lock = threading.Lock()
        self.count = 0
        self.closed = False
        self.zygote: Zygote | None = None
        self.zygote_lock = threading.Lock()

    def _new_worker(self) -> Worker:
        with self.zygote_lock:
            if self.zygote is not None and not self.zygote.alive():
                self.zygote.close()
                self.zygote = None
            if self.zygote is None and hasattr(socket, "send_fds"):
                self.zygote = Zygote(self.mem_mb)
        try:
            return Worker(self.mem_mb, self.zygote)
        except Exception:
            return Worker(self.mem_mb, None)  # fall back to a directly started worker

    def acquire(self, limit: int) -> Worker:
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.count < limit:
                self.count += 1
                try:
                    return self._new_worker()
                except Exception:
                    self.count -= 1
                    raise
        return self.idle.get()

    def release(self, worker: Worker, ok: bool) -> None:
        if ok and worker.alive() and not self.closed:
            self.idle.put(worker)
            return
        worker.kill()
        replacement = None
        if not self.closed:
            try:
                replacement = self._new_worker()
            except Exception:
                replacement = None
        if replacement is not None:
            self.idle.put(replacement)
        else:
            with self.lock:
                self.count -= 1

    def run(self, requests: list[dict[str, Any]], timeout_s: float, limit: int) -> list[list[Any]]:
        """Requests on one worker at a time, each with a hard limit; order kept.

        A request that runs past the limit becomes ``["timeout", ...]``; its
        worker is killed and the rest go to a fresh one.
        """
        results: list[list[Any]] = []
        while len(results) < len(requests):
            worker = self.acquire(limit)
            ok = False
            try:
                got = worker.call(requests[len(results) :], timeout_s)
                ok = got[-1] is not None
                for res in got:
                    results.append(
                        res
                        if res is not None
                        else ["timeout", f"no result within {timeout_s:g} s (worker killed)", None]
                    )
            except Exception as exc:
                results.append(["error", f"math worker failed: {type(exc).__name__}: {exc}", None])
            finally:
                self.release(worker, ok)
        return results

    def warm_up(self, n: int, limit: int) -> None:
        """Start workers until ``n`` are idle and ready (or ``limit`` exist)."""
        got = []
        try:
            for _ in range(n):
                got.append(self.acquire(max(n, limit)))
            for w in got:
                if not w.ready and w._readline(time.monotonic() + STARTUP_S) is not None:
                    w.ready = True
        finally:
            for w in got:
                self.release(w, w.ready)

    def recycle(self) -> None:
        """Stop every idle worker (their caches go with them); later calls fork fresh ones."""
        while True:
            try:
                worker = self.idle.get_nowait()
            except queue.Empty:
                return
            worker.kill()
            with self.lock:
                self.count -= 1

    def close(self) -> None:
        self.closed = True
        while True:
            try:
                self.idle.get_nowait().kill()
            except queue.Empty:
                break
        if self.zygote is not None:
            self.zygote.close()


_POOLS: dict[int, Pool] = {}
_POOLS_LOCK = threading.Lock()
_POOLS_PID = os.getpid()


def get_pool(mem_mb: int) -> Pool:
    """The shared pool for this memory cap (a fresh one in a forked child)."""
    global _POOLS_PID
    with _POOLS_LOCK:
        if os.getpid() != _POOLS_PID:  # forked: the parent's workers are not ours
            _POOLS.clear()
            _POOLS_PID = os.getpid()
        pool = _POOLS.get(mem_mb)
        if pool is None:
            pool = _POOLS[mem_mb] = Pool(mem_mb)
        return pool


@atexit.register
def shutdown() -> None:
    """Stop every worker this process started."""
    if os.getpid() != _POOLS_PID:
        return
    for pool in list(_POOLS.values()):
        pool.close()


def _after_fork_in_child() -> None:
    """A forked child starts with no pools, and a lock no parent thread can be holding."""
    global _POOLS_LOCK, _POOLS_PID
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()
    _POOLS_PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
