"""Host side of the code sandbox: starting workers, cgroups, and a bounded pool.

The pool keeps one warm worker per slot (see ``worker.py``) and hands a
job to whichever slot is free. Everything that crosses to a worker is a JSON
frame; the host waits for the answer with its own deadline and kills the whole
worker when it is late, so a wedged worker can never hang a caller.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from verifiers._sandbox import child as wire

log = logging.getLogger(__name__)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
PIDS_MAX = 128  # processes + threads per worker (cgroup pids.max)
TMP_MB = 256  # size of each worker's /tmp tmpfs
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp"}


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be set up on this machine."""


def base_python() -> str:
    """The base interpreter (not a venv shim): its prefix is all the sandbox mounts."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for path in (os.path.join(sys.base_exec_prefix, "bin", name), os.path.join(sys.base_exec_prefix, "bin", "python3")):
        if os.access(path, os.X_OK):
            return path
    return os.path.realpath(sys.executable)


def ro_paths() -> list[str]:
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc/ld.so.cache", "/etc/localtime"]
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}:
        if not any(prefix == p or prefix.startswith(p + "/") for p in paths):
            paths.append(prefix)
    return paths


# ----------------------------------------------------------------------------- cgroups (v1)


def _own_cgroup(controller: str) -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            for candidate in (f"/sys/fs/cgroup/{controller}{path}", f"/sys/fs/cgroup/{controller}"):
                if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
                    return candidate
    return None


def make_cgroups(tag: str) -> dict | None:
    """Child memory and pids cgroups of our own, or None where we may not create them."""
    made: list[str] = []
    try:
        dirs = {}
        for controller in ("memory", "pids"):
            parent = _own_cgroup(controller)
            if parent is None:
                raise OSError(f"no writable {controller} cgroup")
            _remove_stale(parent)
            path = os.path.join(parent, tag)
            os.mkdir(path)
            made.append(path)
            dirs[controller] = path
        with open(os.path.join(dirs["pids"], "pids.max"), "w") as f:
            f.write(str(PIDS_MAX))
        return dirs
    except OSError as exc:
        log.debug("cgroups unavailable: %s", exc)
        remove_cgroups(made)
        return None


def _remove_stale(parent: str) -> None:
    """Empty cgroups left by a host process that was killed before its atexit ran."""
    for name in os.listdir(parent):
        parts = name.split("-")
        if parts[0] == "advisor" and len(parts) >= 2 and parts[1].isdigit():
            path = os.path.join(parent, name)
            with contextlib.suppress(OSError):  # rmdir refuses a cgroup that still has processes
                if not os.path.exists(f"/proc/{parts[1]}") and time.time() - os.stat(path).st_mtime > 60:
                    os.rmdir(path)


def remove_cgroups(paths) -> None:
    for path in paths:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


# ----------------------------------------------------------------------------- workers


_LATE = {"timeout": True, "host_killed": True}


def _read_frame(fd: int, buf: bytearray, deadline: float) -> dict | None:
    """One frame from a non-blocking fd by the deadline; ``_LATE`` past it, None on EOF."""
    while True:
        try:
            frames = wire.parse_frames(buf, limit=64 << 20)
        except ValueError:
            return None
        if frames:
            return frames[0] if isinstance(frames[0], dict) else None
        left = deadline - time.monotonic()
        if left <= 0:
            return dict(_LATE)
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            buf += chunk


def _spawn(cfg: dict, cwd: str) -> subprocess.Popen:
    return subprocess.Popen(
        [base_python(), "-I", "-S", "-B", WORKER, json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=CLEAN_ENV,
        cwd=cwd,
        close_fds=True,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    for fn in (os.killpg, os.kill):
        with contextlib.suppress(OSError):
            fn(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            stream.close()


class ZygoteWorker:
    """A warm worker inside its own namespaces; runs one job at a time."""

    def __init__(self, slot: int, uids: list[int], tag: str):
        self.cgroups = make_cgroups(f"{tag}-w{slot}")
        cfg = {
            "isolation": "namespace",
            "ro_paths": ro_paths(),
            "uids": uids,
            "tmp_mb": TMP_MB,
            "nproc": 64,
            "cgroup": self.cgroups,
        }
        self.proc = _spawn(cfg, "/")
        self.buf = bytearray()
        self.jobs = 0
        os.set_blocking(self.proc.stdout.fileno(), False)
        hello = _read_frame(self.proc.stdout.fileno(), self.buf, time.monotonic() + 60)
        if not hello or hello.get("host_killed") or not hello.get("ready"):
            self.close()
            raise SandboxUnavailable((hello or {}).get("error", "the worker did not start"))
        self.isolation = hello["isolation"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: dict, wait_s: float) -> dict:
        self.jobs += 1
        try:
            wire.send(self.proc.stdin.fileno(), job)
        except OSError:
            self.close()
            return {"internal_error": "the worker is gone"}
        result = _read_frame(self.proc.stdout.fileno(), self.buf, time.monotonic() + wait_s)
        if result is None or result.get("host_killed"):  # dead, or late: its own deadline failed
            self.close()
        return result if result is not None else {"internal_error": "the worker died"}

    def forget(self) -> None:
        """In a forked child: drop our copies of the pipes; the parent still owns the worker."""
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.detach().close()  # the raw fd only: nothing buffered is flushed into the pipe
        self.proc.returncode = 0  # Popen must never wait on, or signal, a process not ours
        self.cgroups = None

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # EOF: the zygote exits, and with it its namespaces
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill(self.proc)
        if self.cgroups:
            remove_cgroups(self.cgroups.values())
            self.cgroups = None


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += len(os.listdir(f"/proc/{name}/task")) if os.stat(f"/proc/{name}").st_uid == uid else 0
    return count


def run_in_process(job: dict, wait_s: float, uids: list[int], nproc: int) -> dict:
    """Fallback: a fresh ``python -I -S`` per job, rlimits, a new session, killed as a group."""
    workdir = tempfile.mkdtemp(prefix="advisor-code-")
    os.chmod(workdir, 0o755)
    cfg = {"isolation": "process", "uids": uids, "nproc": nproc}
    proc = _spawn(cfg, workdir)
    try:
        wire.send(proc.stdin.fileno(), job)
        os.set_blocking(proc.stdout.fileno(), False)
        result = _read_frame(proc.stdout.fileno(), bytearray(), time.monotonic() + wait_s)
        return result if result is not None else {"internal_error": "the worker died"}
    except OSError as exc:
        return {"internal_error": f"worker failed: {exc}"}
    finally:
        _kill(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- the pool

_POOLS: weakref.WeakSet = weakref.WeakSet()
_WARNED = False


class SandboxPool:
    """``size`` slots; each holds a warm worker (namespace mode) that is recycled every N jobs."""

    def __init__(self, size: int, isolation: str = "auto", recycle_after: int = 500):
        if isolation not in ("auto", "namespace", "process"):
            raise ValueError(f"isolation must be auto, namespace or process, not {isolation!r}")
        self.size, self.requested, self.recycle_after = size, isolation, recycle_after
        self.mode: str | None = None if isolation != "process" else "process"
        self.level = "process" if self.mode == "process" else None
        self._lock: threading.Lock
        self._slots: queue.LifoQueue
        self._workers: list[ZygoteWorker | None]
        self._closed = False
        self._nproc = None
        self._fresh_state()
        _POOLS.add(self)

    def _fresh_state(self) -> None:
        """Locks, slots, workers and ids of this process (again in a forked child)."""
        self._lock = threading.Lock()
        self._slots = queue.LifoQueue()
        self._workers = [None] * self.size
        for i in range(self.size):
            self._slots.put(i)
        self._tag = f"advisor-{os.getpid()}-{id(self) & 0xFFFF:x}"
        base = 1_500_000_000 + (os.getpid() % 100_000) * 64 + (id(self) >> 4) % 8 * 8
        self._uids = [[base + 2 * i, base + 2 * i + 1] for i in range(self.size)]

    def _after_fork_in_child(self) -> None:
        """A forked child gets a pool of its own: the parent's workers are not its to use or close.

        Its copies of their pipes are closed (so the parent's close still reaches
        them), nothing is killed, and a lock or slot a parent thread held at the
        fork is replaced, so the child never waits on it.
        """
        for worker in self._workers:
            if worker is not None:
                worker.forget()
        self._fresh_state()

    def _worker(self, slot: int) -> ZygoteWorker | None:
        """The slot's warm worker, starting one (and settling the mode) when needed."""
        worker = self._workers[slot]
        if worker is not None and worker.alive():
            return worker
        if self.mode == "process":
            return None
        try:
            worker = ZygoteWorker(slot, self._uids[slot], self._tag)
        except (SandboxUnavailable, OSError) as exc:
            if self.requested == "namespace":
                raise SandboxUnavailable(f"namespace isolation unavailable: {exc}") from exc
            with self._lock:
                self._fall_back(str(exc))
            return None
        self.mode, self.level = "namespace", worker.isolation
        self._workers[slot] = worker
        return worker

    def _fall_back(self, why: str) -> None:
        global _WARNED
        self.mode = self.level = "process"
        if not _WARNED:
            _WARNED = True
            log.warning(
                "code verifier: namespaces are unavailable (%s); falling back to process isolation "
                "(rlimits + session kill). Run as root on Linux for the full sandbox.",
                why,
            )

    def run(self, job: dict, wait_s: float) -> tuple[dict, str]:
        """Run one job; returns (raw result, isolation level)."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        slot = self._slots.get()
        try:
            worker = self._worker(slot)
            if worker is None:
                if self._nproc is None:
                    self._nproc = 64 if os.getuid() == 0 else _tasks_of_uid(os.getuid()) + 128
                return run_in_process(job, wait_s, self._uids[slot], self._nproc), "process"
            result = worker.run(job, wait_s)
            level = worker.isolation
            if worker.jobs >= self.recycle_after or result.get("retire") or not worker.alive():
                worker.close()
                self._workers[slot] = None
            return result, level
        finally:
            self._slots.put(slot)

    def close(self) -> None:
        self._closed = True
        for i, worker in enumerate(self._workers):
            if worker is not None:
                worker.close()
                self._workers[i] = None


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
