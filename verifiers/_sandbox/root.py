"""Kernel plumbing for the sandbox worker: namespaces, the read-only root, cgroups, processes.

Stdlib only (``ctypes`` for the syscalls Python 3.10 lacks). Loaded by path by
``worker.py`` before the workspace disappears from view.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import resource
import select
import signal
import stat
import time

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())
KEYCTL_JOIN_SESSION_KEYRING = 1
MiB = 1 << 20


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(_b(src), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {target}")


def prctl(option: int, value: int) -> None:
    _check(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def unshare(flags: int) -> None:
    _check(libc.unshare(flags), "unshare")


def fresh_session_keyring() -> None:
    """Join a new anonymous session keyring, so no key crosses from one run to the next."""
    if SYS_KEYCTL is None:
        raise OSError("keyctl: unknown syscall number on this machine")
    ret = libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"keyctl: {os.strerror(err)}")


# ----------------------------------------------------------------------------- filesystem


def build_root(cfg: dict) -> None:
    """Build the read-only root in this (private) mount namespace and pivot into it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    sources = [p for p in cfg["ro_paths"] if os.path.lexists(p)]
    base = next(
        d
        for d in ("/mnt", "/media", "/srv", "/opt", "/var", "/tmp")
        if os.path.isdir(d) and not any((os.path.realpath(s) + "/").startswith(d + "/") for s in sources)
    )
    mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for src in sources:
        dst = base + src
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src) and os.path.dirname(src) == "/":
            os.symlink(os.readlink(src), dst)  # merged-/usr links such as /bin -> usr/bin
            continue
        real = os.path.realpath(src)
        if os.path.isdir(real):
            os.makedirs(dst, exist_ok=True)
        else:
            open(dst, "w").close()
        mount(real, dst, None, MS_BIND | MS_REC)
        mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.makedirs(base + "/dev", exist_ok=True)
    for name in ("null", "zero", "full", "random", "urandom"):
        open(base + "/dev/" + name, "w").close()
        mount("/dev/" + name, base + "/dev/" + name, None, MS_BIND)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", base + "/dev/" + name)
    os.symlink("/proc/self/fd", base + "/dev/fd")
    tmp_mb = int(cfg.get("tmp_mb", 256))
    for path, size in (("/tmp", tmp_mb), ("/dev/shm", 64)):
        os.makedirs(base + path, exist_ok=True)
        mount("tmpfs", base + path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
    os.makedirs(base + "/proc", exist_ok=True)
    try:  # only the process directories, and only one's own (subset= needs Linux 5.8)
        mount("proc", base + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2,subset=pid")
    except OSError:
        mount("proc", base + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    os.makedirs(base + "/etc", exist_ok=True)
    with open(base + "/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/:/bin/false\n")
        f.writelines(f"sandbox{u}:x:{u}:{u}::/tmp:/bin/false\n" for u in cfg["uids"])
    with open(base + "/etc/group", "w") as f:
        f.write("root:x:0:\n")
    with open(base + "/etc/hosts", "w") as f:
        f.write("127.0.0.1 localhost\n")
    os.chdir(base)
    if SYS_PIVOT_ROOT is not None:
        _check(libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
        _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    else:  # pragma: no cover - other architectures: move + chroot (no pivot_root number known)
        mount(base, "/", None, 8192)  # MS_MOVE
        os.chroot(".")
    os.chdir("/")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    libc.sethostname(b"sandbox", 7)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def wipe(paths: tuple[str, ...]) -> bool:
    """Empty each folder in ``paths``; True when every one is empty afterwards.

    Iterative, one open folder at a time, and never by path: each folder met is
    first renamed to the top (``renameat``), so a tree of any depth is removed
    with a flat loop, no recursion and no path longer than one name. Whatever
    cannot be removed makes the result False (the caller retires the worker).
    """
    clean = True
    for top in paths:
        try:
            top_fd = os.open(top, _DIR_FLAGS)
        except OSError:
            continue
        try:
            _empty(top_fd)
            clean = clean and not os.listdir(top_fd)
        except OSError:
            clean = False
        finally:
            os.close(top_fd)
    return clean


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _empty(top_fd: int) -> None:
    todo = os.listdir(top_fd)  # names directly under the top folder, still to remove
    serial = 0
    while todo:
        name = todo.pop()
        try:
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=top_fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            continue
        if not is_dir:
            os.unlink(name, dir_fd=top_fd)
            continue
        fd = os.open(name, _DIR_FLAGS, dir_fd=top_fd)
        try:
            os.chmod(fd, 0o700)  # a folder the program made unreadable or unwritable
            for entry in os.listdir(fd):
                if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    flat = f".wipe-{serial}"
                    while _exists(flat, top_fd):
                        serial += 1
                        flat = f".wipe-{serial}"
                    os.rename(entry, flat, src_dir_fd=fd, dst_dir_fd=top_fd)  # flatten: no depth
                    todo.append(flat)
                else:
                    os.unlink(entry, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=top_fd)  # empty now: its subfolders were moved to the top


# ----------------------------------------------------------------------------- cgroups


class Cgroups:
    """Per-worker cgroup v1 files, opened before the root is pivoted away."""

    def __init__(self, spec: dict):
        mem, pids = spec["memory"], spec["pids"]
        self.mem_procs = os.open(os.path.join(mem, "cgroup.procs"), os.O_WRONLY)
        self.mem_limit = os.open(os.path.join(mem, "memory.limit_in_bytes"), os.O_WRONLY)
        self.oom = os.open(os.path.join(mem, "memory.oom_control"), os.O_RDONLY)
        self.pids_procs = os.open(os.path.join(pids, "cgroup.procs"), os.O_WRONLY)

        self.limit_mb = None

    def join(self) -> None:
        """Move this process (the zygote) in; every fork inherits the membership for free."""
        os.pwrite(self.mem_procs, b"0", 0)  # "0": the writer itself, whatever its PID namespace
        os.pwrite(self.pids_procs, b"0", 0)

    def set_limit(self, memory_mb: int) -> None:
        if memory_mb != self.limit_mb:
            try:
                os.pwrite(self.mem_limit, str(memory_mb * MiB).encode(), 0)
                self.limit_mb = memory_mb
            except OSError:
                pass  # usage above the new limit: the previous limit stays

    def oom_kills(self) -> int:
        for line in os.pread(self.oom, 4096, 0).decode().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0


class PidNamespaces:
    """A fresh PID namespace for the next forks, from a long-lived (zygote) process.

    ``unshare(CLONE_NEWPID)`` only redirects future children, and refuses to run
    again while they are redirected; pointing them back at our own namespace with
    ``setns`` first makes it repeatable, so no extra supervisor fork is needed.
    """

    def __init__(self) -> None:
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def fresh(self) -> None:
        self.restore()
        unshare(CLONE_NEWPID)

    def restore(self) -> None:
        _check(libc.setns(self.own, CLONE_NEWPID), "setns")


# ----------------------------------------------------------------------------- processes


_NULL: list[int] = []  # an fd on /dev/null, opened once (the sandbox's /dev is tiny)


def remap(fds: list[int | None]) -> None:
    """Make fd i of this process be fds[i] (None -> /dev/null) and close everything else."""
    if not _NULL:
        _NULL.append(os.open("/dev/null", os.O_RDWR))
    high = [fcntl.fcntl(_NULL[0] if fd is None else fd, fcntl.F_DUPFD, 100 + i) for i, fd in enumerate(fds)]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(fds), 1 << 16)


def oom_adj(value: int) -> None:
    with contextlib.suppress(OSError):
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)


def spawn(
    role, fds: list[int | None], uid: int | None, limits: dict, oom_score: int, cwd: str, fresh: bool = False
) -> int:
    """Fork a child that remaps its fds, drops to ``uid`` with ``limits``, then runs ``role()``.

    With ``fresh`` (a candidate) the child gets an IPC namespace of its own when
    it may (root): SysV shared memory, queues and semaphores die with the run
    instead of surviving into the next one, charged to the worker's cgroup. It
    also joins a new session keyring, so no key crosses from run to run.
    """
    pid = os.fork()
    if pid:
        return pid
    try:
        remap(fds)
        os.setsid()
        oom_adj(oom_score)
        os.chdir(cwd)
        if fresh and os.getuid() == 0:
            unshare(CLONE_NEWIPC)
        if uid is not None and os.getuid() == 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if fresh:
            fresh_session_keyring()
        # no_new_privs and non-dumpable are inherited from the worker, which set them once.
        for res, value in limits.items():
            resource.setrlimit(res, (value, value))
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        role()
    except BaseException:
        pass
    os._exit(70)


def descendants() -> list[int]:
    me, kids = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == me:
                kids.append(int(name))
    return kids


def kill_descendants() -> None:
    """Process mode: we are a child subreaper, so every orphan ends up as our child."""
    for _ in range(100):
        kids = descendants()
        if not kids:
            return
        for pid in kids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reap_all(patient=True)


def reap_all(patient: bool = False) -> None:
    """Reap exited children; ``patient`` waits for every child (none may be left alive)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not patient:
                return
            time.sleep(0.002)


def wait_exit(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` for a child to exit, without reaping it."""
    if timeout <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # old kernel or Python: poll
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
            time.sleep(0.001)
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def exit_status(pid: int, block: bool) -> list[int | None] | None:
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    if os.WIFSIGNALED(status):
        return [None, os.WTERMSIG(status)]
    return [os.WEXITSTATUS(status), None]
