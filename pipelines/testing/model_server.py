"""Real models behind the OpenAI chat-completions API on 127.0.0.1, for tests.

:class:`ModelServer` serves one or several model directories through transformers
(:class:`pipelines.generation.HFGenerator`), each under its own name, so the ``openai``
backend, a teacher and a judge panel can be tested end to end against a real engine
without vLLM::

    with ModelServer({"teacher": "runs/teacher", "judge-a": "runs/judge-a"}) as server:
        gen = OpenAIGenerator("teacher", base_url=server.base_url)
        gen.generate(["What is 2+2?"], n=4, temperature=0.7)

Every prompt is a conversation and goes through the model's chat template, as a chat
server does. Generations run one at a time (torch and the models are shared by the
handler threads). ``delay`` adds latency to every request, for tests that must interrupt a
run while it is generating. For faults (500, 429, 401, ...) use
:class:`pipelines.testing.openai_server.ScriptedServer`; for vLLM's own server,
:mod:`pipelines.testing.vllm_server`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.testing.openai_server import ChatServer


class ModelServer(ChatServer):
    """Serve real models by name while the ``with`` block lasts.

    Args:
        models: A model directory (served as ``model_name``), or ``{name: directory}``.
        model_name: The name a single directory is served under.
        api_key: If set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        delay: Seconds each chat request waits before generating.
        hf_options: Extra keyword arguments for every ``HFGenerator``.

    Attributes:
        generated: Chat requests answered with generated text, per model name.
    """

    def __init__(
        self,
        models: str | Path | Mapping[str, str | Path],
        *,
        model_name: str = "tiny",
        api_key: str | None = None,
        delay: float = 0.0,
        hf_options: dict[str, Any] | None = None,
    ) -> None:
        self.model_dirs = dict(models) if isinstance(models, Mapping) else {model_name: models}
        if not self.model_dirs:
            raise ValueError("ModelServer needs at least one model directory")
        super().__init__(tuple(self.model_dirs), api_key)
        self.delay = delay
        self.hf_options = hf_options or {}
        self.generated: dict[str, int] = dict.fromkeys(self.model_dirs, 0)
        self._generators: dict[str, Any] = {}
        self._generate_lock = threading.Lock()

    def _load(self) -> None:
        from pipelines.generation import HFGenerator

        for name, folder in self.model_dirs.items():
            if name not in self._generators:
                self._generators[name] = HFGenerator(str(folder), **self.hf_options)

    def _replies(self, body: dict[str, Any], messages: list[dict[str, Any]], model: str, n: int) -> list[str]:
        if self.delay:
            time.sleep(self.delay)
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        temperature = body.get("temperature")
        top_p = body.get("top_p")
        with self._generate_lock:
            texts = self._generators[model].generate(
                [messages],
                n=n,
                temperature=1.0 if temperature is None else float(temperature),
                top_p=1.0 if top_p is None else float(top_p),
                max_new_tokens=int(max_tokens),
                seed=body.get("seed"),
                stop=stop,
            )[0]
        with self._lock:
            self.generated[model] += 1
        return texts
