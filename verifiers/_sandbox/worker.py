"""The sandbox worker: a warm "zygote" that forks each program into a fresh PID namespace.

Started by the host (``verifiers/_sandbox/host.py``) as ``python -I -S -B <this file> CONFIG``,
with the control channel on stdin/stdout (length-prefixed JSON frames). Stdlib only.

``isolation == "namespace"`` (root):

1. Open this worker's memory and pids cgroups; the zygote joins them, and every
   later fork inherits the membership.
2. ``unshare`` a PID namespace and fork the zygote as its PID 1; the zygote then
   unshares mount, network, IPC and UTS namespaces. (The outer process stays
   in the host's: it watches the host, and removes the cgroups at the end.)
3. Build a read-only root: a tmpfs with read-only binds of the allowlist, small
   tmpfs for ``/tmp`` and ``/dev/shm``, a few ``/dev`` nodes, ``/proc`` with
   ``hidepid=2``; ``pivot_root`` into it and detach the old root.
4. Serve jobs, one at a time. For each: point future children at a fresh PID
   namespace and fork the candidate (PID 1 there), dropped to an unprivileged
   uid with rlimits (``no_new_privs`` and non-dumpable come from the worker); in
   ``assert`` mode hand the pipe ends to the worker's long-lived tests process
   (another uid; it never runs candidate code, so it can outlive runs); pump the
   pipes with a deadline and an output cap; SIGKILL the candidate, which as
   PID 1 takes every process of the run with it; wipe ``/tmp`` and ``/dev/shm``;
   answer.

``isolation == "process"``: the fallback where namespaces are unavailable. The
worker runs exactly one job as a child subreaper, then kills its whole tree.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import resource
import select
import signal
import socket
import sys
import time


def _load(file: str, name: str):
    """Import a sibling module by path (``-I`` keeps the script's folder off sys.path).

    It is registered under ``name`` (``_sandbox_<file>``), a name no candidate
    program imports by accident.
    """
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(os.path.dirname(os.path.abspath(__file__)), file + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


child = _load("child", "_sandbox_child")
tests_role = _load("tests_role", "_sandbox_tests")
root = _load("root", "_sandbox_root")
MiB = root.MiB

# Warm imports: every fork starts with these already loaded (and their C
# libraries mapped, which matters once the real /etc and /lib are out of sight).
PRELOAD = ("typing", "math", "random", "collections", "itertools", "functools", "heapq", "bisect", "string")

# ----------------------------------------------------------------------------- one job


class TestsServer:
    """The long-lived tests process of a namespace worker (uid B; see ``child.tests_server``).

    It never runs candidate code, so it can outlive runs: each run hands it three
    pipe ends. One that does not answer in time, or dies, is replaced.
    """

    def __init__(self, uid: int | None):
        self.uid, self.pid, self.sock = uid, None, None

    def submit(self, job: dict, fds: list[int]) -> None:
        for _ in range(2):  # a server that died between runs is replaced once
            if self.pid is not None and root.exit_status(self.pid, block=False) is not None:
                self.kill()  # it had died (and is now reaped): drop its socket too
            if self.pid is None:
                ours, theirs = socket.socketpair()
                limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_NOFILE: 256, resource.RLIMIT_FSIZE: 64 * MiB}
                self.pid = root.spawn(
                    lambda: tests_role.tests_server(3),
                    [None, None, None, theirs.fileno()],
                    self.uid,
                    limits,
                    -1000,
                    "/",
                )
                theirs.close()
                self.sock = ours
            try:
                socket.send_fds(self.sock, [b"J"], fds)
                child.send(self.sock.fileno(), {k: job.get(k) for k in ("tests", "entry_point", "nonce")})
                return
            except OSError:
                self.kill()

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            root.exit_status(self.pid, block=True)
            self.sock.close()
            self.pid = self.sock = None
        elif self.sock is not None:
            self.sock.close()
            self.sock = None


def _job_limits(job: dict, cfg: dict, with_cgroup: bool) -> dict:
    calls = len(job.get("calls", ()))
    budget = float(job["timeout"]) * (calls + 1 if job["mode"] == "call" else 1)
    limits = {
        resource.RLIMIT_CPU: int(budget) + 2,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: 256,
        resource.RLIMIT_FSIZE: 64 * MiB,
    }
    if cfg.get("nproc"):
        limits[resource.RLIMIT_NPROC] = cfg["nproc"]
    if not with_cgroup:  # no memory cgroup: the address-space limit is the only memory cap
        limits[resource.RLIMIT_AS] = int(job["memory_mb"]) * MiB
    return limits


def supervise(
    job: dict, cfg: dict, cg: root.Cgroups | None, pidns: root.PidNamespaces | None, tserver: TestsServer | None = None
) -> dict:
    """Run one job and report raw facts; the host turns them into a verdict.

    With ``pidns`` the candidate is PID 1 of a fresh PID namespace, so killing it
    at the end kills every process the run created, and ``tserver`` runs the
    tests. Without them (process mode) a tests process is forked for the run, and
    we kill the group and every descendant.
    """
    t0 = time.monotonic()
    mode = job["mode"]
    oom_before = cg.oom_kills() if cg else 0
    if cg:
        cg.set_limit(int(job["memory_mb"]))
    uid_c, uid_t = cfg["uids"] if os.getuid() == 0 else (None, None)
    if pidns:  # /tmp and /dev/shm were wiped after the previous run
        workdir = "/tmp/work"
        if os.path.lexists(workdir) and not root.wipe(("/tmp", "/dev/shm")):
            raise RuntimeError("the work folder could not be cleaned")  # the host replaces this worker
        os.mkdir(workdir, 0o700)
    else:
        workdir = os.getcwd()
    if uid_c is not None:
        os.chown(workdir, uid_c, uid_c)
    limits = _job_limits(job, cfg, cg is not None)
    opened: list[int] = []

    def pipe() -> tuple[int, int]:
        r, w = os.pipe()
        opened.extend((r, w))
        return r, w

    def close(*fds: int | None) -> None:
        for fd in fds:
            if fd is not None and fd in opened:
                opened.remove(fd)
                os.close(fd)

    cand = tests = None
    try:
        out_r, out_w = pipe()
        err_r, err_w = pipe()
        stdin_fd = req_r = req_w = resp_r = resp_w = res_r = res_w = None
        if mode == "stdio":
            path = os.path.join(workdir, ".stdin")
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(job.get("stdin", ""))
            stdin_fd = os.open(path, os.O_RDONLY)
            opened.append(stdin_fd)
            os.unlink(path)
        else:
            req_r, req_w = pipe()
            resp_r, resp_w = pipe()
        if mode == "assert":
            res_r, res_w = pipe()
        code = job["code"]
        if pidns:
            pidns.fresh()
        try:
            cand = root.spawn(
                lambda: child.candidate_main(code, mode == "stdio"),
                [stdin_fd, out_w, err_w, req_r, resp_w],
                uid_c,
                limits,
                1000,
                workdir,
                fresh=True,
            )
            if mode == "assert" and tserver is None:
                tests = root.spawn(
                    lambda: tests_role.tests_main(job["tests"], job.get("entry_point"), job["nonce"]),
                    [None, None, None, resp_r, req_w, res_w],
                    uid_t,
                    limits,
                    -1000,
                    "/",
                )
        finally:
            if pidns:
                pidns.restore()
        if mode == "assert" and tserver is not None:
            tserver.submit(job, [resp_r, req_w, res_w])
        close(stdin_fd, out_w, err_w, req_r, resp_w, res_w)
        if mode == "assert":
            close(resp_r, req_w)
            resp_r = req_w = None
        facts = _pump(job, cand, tests, out_r, err_r, req_w, resp_r, res_r, t0)
    finally:
        if cand is not None:  # as PID 1 its death takes the namespace; else kill group and tree
            for kill in (os.kill,) if pidns else (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(cand, signal.SIGKILL)
        if tests is not None:
            with contextlib.suppress(OSError):
                os.kill(tests, signal.SIGKILL)
        if not pidns:
            root.kill_descendants()
        # Reap the tests process first: PID 1's exit waits until the namespace is empty.
        if tests is not None:
            root.exit_status(tests, block=True)
        if cand is not None:
            root.exit_status(cand, block=True)  # ECHILD (None) when the pump already reaped it
        root.reap_all()
        close(*list(opened))
        clean = True
        if pidns:
            try:
                clean = root.wipe(("/tmp", "/dev/shm"))
            except Exception:
                clean = False
    if tserver is not None and mode == "assert" and (facts["tests"] is None or facts["tests"].get("retire")):
        tserver.kill()  # late, dead or retiring: a fresh one serves the next run
    if not clean:
        facts["retire"] = True  # something survived the wipe: this worker serves no other run
    facts["oom"] = bool(cg and cg.oom_kills() > oom_before)
    facts["elapsed"] = round(time.monotonic() - t0, 4)
    return facts


def _pump(job, cand, tests, out_r, err_r, req_w, resp_r, res_r, t0) -> dict:
    """Drain output (capped), feed call requests, collect replies, until done or the deadline."""
    mode, timeout, out_limit = job["mode"], float(job["timeout"]), int(job["output_limit"])
    ncalls = len(job.get("calls", ()))
    streams = {out_r: bytearray(), err_r: bytearray()}
    open_fds = {fd for fd in (out_r, err_r, res_r, resp_r) if fd is not None}
    result_buf, reply_buf, replies = bytearray(), bytearray(), []
    pending = bytearray()
    if mode == "call":
        for args in job["calls"]:
            body = json.dumps({"fn": job["entry_point"], "args": args}, separators=(",", ":")).encode()
            pending += len(body).to_bytes(4, "big") + body
        pending += b'\x00\x00\x00\x0b{"fn":null}'  # then a last tamper check
        os.set_blocking(req_w, False)
    deadline = t0 + timeout
    timed_out = exceeded = done = False
    total_out = 0
    cand_status = None
    while not done:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        wfds = [req_w] if pending else []
        try:
            readable, writable, _ = select.select(list(open_fds), wfds, [], min(deadline - now, 0.05))
        except InterruptedError:
            continue
        if writable:
            try:
                del pending[: os.write(req_w, pending)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pending.clear()
        for fd in readable:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                open_fds.discard(fd)
                done = done or fd in (res_r, resp_r) or (mode == "stdio" and not ({out_r, err_r} & open_fds))
                continue
            if fd in streams:
                total_out += len(chunk)
                if total_out > out_limit:
                    exceeded = done = True
                    break
                streams[fd] += chunk
                if fd == err_r and len(streams[fd]) > 8192:
                    del streams[fd][:-4096]
            elif fd == res_r:
                result_buf += chunk
                done = len(result_buf) > child.MAX_MESSAGE
            else:
                reply_buf += chunk
                try:
                    for msg in child.parse_frames(reply_buf):
                        replies.append(msg)
                        deadline = time.monotonic() + timeout  # the per-case clock restarts
                        if not isinstance(msg, dict) or "load_error" in msg or msg.get("tampered"):
                            done = True
                except ValueError:
                    replies.append({"malformed": True})
                    done = True
                done = done or len(replies) >= ncalls + 2
        if mode == "stdio" and not done and cand_status is None:
            cand_status = root.exit_status(cand, block=False)
            if cand_status is not None:  # it exited, but a daemon may still hold the pipes
                for fd in (out_r, err_r):
                    os.set_blocking(fd, False)
                    while total_out <= out_limit:
                        try:
                            chunk = os.read(fd, 1 << 16)
                        except OSError:
                            break
                        if not chunk:
                            break
                        total_out += len(chunk)
                        streams[fd] += chunk
                exceeded = total_out > out_limit
                done = True
    tests_result = None
    if res_r is not None:
        try:
            frames = child.parse_frames(result_buf)
            tests_result = frames[0] if frames and isinstance(frames[0], dict) else None
        except ValueError:
            pass
    # The candidate closed its channel or the tests ended without a result: learn how it ended.
    ended = (resp_r is not None and resp_r not in open_fds) or (mode == "assert" and tests_result is None)
    ended = ended or (isinstance(tests_result, dict) and tests_result.get("status") == "gone") or mode == "stdio"
    if cand_status is None and not timed_out and not exceeded:
        if tests is not None:  # a dead PID 1 only finishes exiting once this one is reaped
            root.wait_exit(tests, 0.2 if ended else 0)
            root.exit_status(tests, block=False)
        if ended:
            root.wait_exit(cand, 0.2)
        cand_status = root.exit_status(cand, block=False)
    return {
        "timeout": timed_out,
        "output_exceeded": exceeded,
        "exit": cand_status,
        "stdout": bytes(streams[out_r]).decode("utf-8", "replace"),
        "stderr": bytes(streams[err_r][-2000:]).decode("utf-8", "replace"),
        "tests": tests_result,
        "replies": replies,
    }


# ----------------------------------------------------------------------------- entry points


def zygote_loop(ctl_in: int, ctl_out: int, cfg: dict, cg: root.Cgroups | None) -> None:
    pidns = root.PidNamespaces()
    tserver = TestsServer(cfg["uids"][1] if os.getuid() == 0 else None)
    while True:
        try:
            job = child.recv(ctl_in, limit=256 * MiB)
        except (EOFError, OSError, ValueError):
            os._exit(0)
        try:
            result = supervise(job, cfg, cg, pidns, tserver)
        except Exception as exc:
            result = {"internal_error": f"{type(exc).__name__}: {exc}", "retire": True}
        child.send(ctl_out, result)
        if result.get("retire"):
            os._exit(0)  # not reusable: the host starts a fresh worker for the next run


def _outer(zygote: int, cfg: dict) -> None:
    """The worker's first process: wait for the zygote, kill it if the host dies, then clean up."""
    host = os.getppid()
    while True:
        root.wait_exit(zygote, 0.5)
        status = root.exit_status(zygote, block=False)
        if status is not None:  # its namespace died with it: the cgroups are empty now
            for path in (cfg.get("cgroup") or {}).values():
                for _ in range(50):
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
                    if not os.path.exists(path):
                        break
                    time.sleep(0.01)
            os._exit(status[0] if status[0] is not None else 1)
        if os.getppid() != host:  # the host died: even a wedged zygote must not outlive it
            os.kill(zygote, signal.SIGKILL)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.umask(0o022)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    root.prctl(root.PR_SET_NO_NEW_PRIVS, 1)  # inherited by every fork, irreversibly
    root.prctl(root.PR_SET_DUMPABLE, 0)  # likewise: no ptrace, no /proc/<pid>/mem
    if cfg["isolation"] == "process":
        root.prctl(root.PR_SET_CHILD_SUBREAPER, 1)
        job = child.recv(ctl_in, limit=256 * MiB)
        try:
            result = supervise(job, cfg, None, None)
        except BaseException as exc:
            result = {"internal_error": f"{type(exc).__name__}: {exc}"}
        child.send(ctl_out, result)
        os._exit(0)
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    cg = None
    if cfg.get("cgroup"):
        with contextlib.suppress(OSError):
            cg = root.Cgroups(cfg["cgroup"])  # opened now: /sys is out of sight after the pivot
    root.oom_adj(-1000)
    try:  # only the PID namespace here: the outer process stays in the host's mounts
        root.unshare(root.CLONE_NEWPID)
    except OSError as exc:
        child.send(ctl_out, {"ready": False, "error": str(exc)})
        os._exit(0)
    pid = os.fork()
    if pid:  # outside the new PID namespace: wait for the zygote, then follow it
        os.close(ctl_in)
        os.close(ctl_out)
        _outer(pid, cfg)
    root.prctl(root.PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        root.unshare(root.CLONE_NEWNS | root.CLONE_NEWNET | root.CLONE_NEWIPC | root.CLONE_NEWUTS)
    except OSError as exc:
        child.send(ctl_out, {"ready": False, "error": str(exc)})
        os._exit(0)
    if cg is not None:
        try:  # the zygote alone joins (the outer process must stay out to remove them later)
            cg.join()
        except OSError:
            cg = None
    child.warm_up()
    gc.collect()
    gc.freeze()  # keep the collector from touching (and so copying) the warm heap in every fork
    try:
        root.build_root(cfg)
    except OSError as exc:
        child.send(ctl_out, {"ready": False, "error": str(exc)})
        os._exit(0)
    level = "namespace+cgroup" if cg else "namespace"
    child.send(ctl_out, {"ready": True, "isolation": level})
    zygote_loop(ctl_in, ctl_out, cfg, cg)


if __name__ == "__main__":
    main()
