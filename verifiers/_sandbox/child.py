"""What runs inside the code sandbox: the wire format and the candidate role.

This module is stdlib-only. The host imports it for the wire format; the sandbox
worker (``worker.py``, started as ``python -I -S``) loads it by path
before it hides the workspace, so every fork of the worker already has it.

The **candidate** (uid A, privileges dropped) runs the model's program. In
``call`` and ``assert`` mode it then serves calls ``{"fn", "args", "kwargs"}``
on a pipe and answers with the return value *encoded as plain data*. A value
whose type is not exactly a plain type (an always-equal object, an ``int``
subclass) cannot be encoded, so it never reaches whoever compares it: the host
in ``call`` mode, the tests process (``tests_role.py``, uid B, where no
candidate code ever runs) in ``assert`` mode.

Messages are length-prefixed JSON (4-byte big-endian length), never pickle.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import operator
import os
import struct
import sys
import traceback
import types

MAX_MESSAGE = 16 << 20  # bytes; a bigger frame is refused
MAX_DEPTH = 100  # nesting of encoded values

# ----------------------------------------------------------------------------- framing


def send(fd: int, obj: object) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8", "surrogatepass")
    data = struct.pack(">I", len(data)) + data
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd: int, limit: int = MAX_MESSAGE) -> object:
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    if size > limit:
        raise ValueError(f"message of {size} bytes exceeds {limit}")
    return json.loads(_read_exact(fd, size).decode("utf-8", "surrogatepass"))


def parse_frames(buf: bytearray, limit: int = MAX_MESSAGE) -> list[object]:
    """Pop every complete frame off ``buf`` (for non-blocking readers)."""
    out = []
    while len(buf) >= 4:
        (size,) = struct.unpack(">I", bytes(buf[:4]))
        if size > limit:
            raise ValueError(f"message of {size} bytes exceeds {limit}")
        if len(buf) < 4 + size:
            break
        out.append(json.loads(bytes(buf[4 : 4 + size]).decode("utf-8", "surrogatepass")))
        del buf[: 4 + size]
    return out


# ----------------------------------------------------------------------------- plain values


def encode(x: object, depth: int = 0) -> object:
    """Plain data to JSON-able form. Only exact plain types pass (``type(x) is int``)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if t is int and int.bit_length(x) > 4096:  # past JSON's decimal digit limit: hex
        return {"i": int.__format__(x, "x")}
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    d = depth + 1
    if t is list:
        return [encode(v, d) for v in x]
    if t is tuple:
        return {"t": [encode(v, d) for v in x]}
    if t is set or t is frozenset:
        return {"s" if t is set else "f": [encode(v, d) for v in x]}
    if t is dict:
        return {"d": [[encode(k, d), encode(v, d)] for k, v in dict.items(x)]}
    if t is bytes:
        return {"b": bytes.hex(x)}
    if t is complex:
        return {"c": [complex.__getattribute__(x, "real"), complex.__getattribute__(x, "imag")]}
    raise TypeError(f"{t.__module__}.{t.__qualname__} is not a plain value type")


def decode(x: object, depth: int = 0) -> object:
    """Inverse of :func:`encode`; rejects anything malformed."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    d = depth + 1
    if t is list:
        return [decode(v, d) for v in x]
    if t is dict and len(x) == 1:
        ((tag, v),) = x.items()
        if type(v) is list:
            if tag == "t":
                return tuple(decode(i, d) for i in v)
            if tag == "s":
                return {decode(i, d) for i in v}
            if tag == "f":
                return frozenset(decode(i, d) for i in v)
            if tag == "d" and all(type(p) is list and len(p) == 2 for p in v):
                return {decode(k, d): decode(val, d) for k, val in v}
            if tag == "c" and len(v) == 2 and all(type(i) in (int, float) for i in v):
                return complex(v[0], v[1])
        if tag == "b" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "i" and type(v) is str:
            return int(v, 16)
    raise ValueError("malformed encoded value")


# ----------------------------------------------------------------------------- stdio helpers


def fresh_stdio() -> None:
    """Rebind sys.std* to fds 0-2 with empty buffers (the worker never used them)."""
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return str(text)[:500]


# ----------------------------------------------------------------------------- tamper check


def _spaces() -> list[tuple[str, dict]]:
    spaces = [("builtins", builtins.__dict__), ("operator", operator.__dict__)]
    unittest_case = sys.modules.get("unittest.case")
    if unittest_case is not None:
        spaces.append(("unittest.TestCase", unittest_case.TestCase.__dict__))
        spaces.append(("unittest.case", unittest_case.__dict__))
    return spaces


def snapshot() -> dict[str, dict]:
    return {name: dict(space) for name, space in _spaces()}


_WARM_SNAPSHOT: dict[str, dict] = {}


def warm_up() -> None:
    """Take the tamper snapshot once in the worker, so forks inherit it for free."""
    _WARM_SNAPSHOT.update(snapshot())


def tampered(snap: dict[str, dict], authors: tuple[str, ...] = ("<candidate>",)) -> str | None:
    """Name of a ``builtins``/``operator``/``unittest`` entry the program replaced, if any.

    Entries that existed before the program ran must be the same objects; any
    other entry (``unittest`` may be imported by the program itself) must not be
    a function whose code the program wrote.
    """
    for name, space in _spaces():
        saved = snap.get(name, {})
        for key, value in list(space.items()):
            if key in saved:
                if value is not saved[key]:
                    return f"{name}.{key}"
            elif getattr(getattr(value, "__code__", None), "co_filename", "") in authors:
                return f"{name}.{key}"
        for key in saved:
            if key not in space:
                return f"{name}.{key}"
    return None


# ----------------------------------------------------------------------------- candidate role


def _exports(g: dict) -> dict:
    """What the tests process needs to rebuild the candidate's namespace."""
    funcs, values, imports = [], {}, {}
    for key, value in list(g.items()):
        if key.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            imports[key] = [value.__name__, ""]
        elif isinstance(value, types.FunctionType) and value.__code__.co_filename == "<candidate>":
            funcs.append(key)
        elif callable(value):
            mod, qual = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
            if type(mod) is str and type(qual) is str:
                imports[key] = [mod, qual]
        else:
            with contextlib.suppress(TypeError, ValueError):
                values[key] = encode(value)
    return {"funcs": funcs, "values": values, "imports": imports}


def candidate_main(code: str, stdio: bool) -> None:
    """Run the program; in call/assert mode then serve calls on fds 3 (requests) and 4 (replies)."""
    if stdio:  # in the other modes sys.std* from the worker, unused and unbuffered so far, do
        fresh_stdio()
    snap = _WARM_SNAPSHOT or snapshot()
    g: dict = {"__name__": "__main__" if stdio else "candidate", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), g)
    except SystemExit as exc:
        if stdio:
            _flush()
            code_ = exc.code
            os._exit(code_ if type(code_) is int and 0 <= code_ < 256 else (0 if code_ is None else 1))
        load_error = describe(exc)
    except BaseException as exc:
        if stdio:
            traceback.print_exc()
            _flush()
            os._exit(1)
        load_error = describe(exc)
    else:
        load_error = None
    _flush()
    if stdio:
        os._exit(0)
    if load_error is not None:
        send(4, {"load_error": load_error})
        try:  # stay until the tests process has read it: as PID 1, our exit would end it too
            while os.read(3, 65536):
                pass
        except OSError:
            pass
        os._exit(0)
    send(4, {"ready": _exports(g), "tampered": tampered(snap)})
    while True:
        try:
            msg = recv(3)
        except (EOFError, OSError):
            os._exit(0)
        if msg.get("fn") is None:  # the tests are done: a last look for tampering
            send(4, {"tampered": tampered(snap)})
            continue
        reply: dict
        try:
            fn = g[msg["fn"]]
            args = decode(msg["args"])
            kwargs = decode(msg.get("kwargs", {"d": []}))
            result = fn(*args, **kwargs)
        except BaseException as exc:
            reply = {"raise": type(exc).__name__, "msg": describe(exc)}
        else:
            try:
                reply = {"ok": encode(result)}
                after = encode(args)
                if after != msg["args"]:  # mutated in place: the tests process mirrors it
                    reply["args"] = after
            except (TypeError, ValueError, RecursionError) as exc:
                reply = {"forged": describe(exc)}
        _flush()
        send(4, reply)
