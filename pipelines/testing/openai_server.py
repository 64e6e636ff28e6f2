"""The OpenAI chat-completions API over HTTP on 127.0.0.1, for tests: the shared server
and its scripted flavour, for fault injection.

:class:`ChatServer` speaks just enough of the API for
:class:`pipelines.generation.OpenAIGenerator` and the ``openai`` client:
``POST /v1/chat/completions`` and ``GET /v1/models``, with an optional API key and a log of
every request. Two servers build on it:

- :class:`ScriptedServer` (here) answers from a plain Python function and injects
  failures on purpose, so a client's retry and error paths are testable offline::

      with ScriptedServer(reply=lambda messages: "4", fail_first=[500]) as server:  # one 500, then fine
      with ScriptedServer(reply=..., always_status=401) as server:                  # every request 401
      with ScriptedServer(reply=lambda messages, model: ..., model_name=("a", "b")): ...

  It is for faults (500, 429, 401, 404, servers that ignore ``n`` or ``stop``), never for
  checking that generation succeeds.
- :class:`pipelines.testing.model_server.ModelServer` answers from real model directories
  through transformers: the engine successful generation is tested against (with vLLM's
  own server, :mod:`pipelines.testing.vllm_server`).

What they are not: production servers. They bind 127.0.0.1 on a free port, ignore
streaming, tools and logprobs, and report zero token usage. Use vLLM for real serving.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# reply(messages) or reply(messages, model): one reply text per call.
Reply = Callable[..., str]


class ChatServer:
    """Serve chat completions on ``127.0.0.1`` from a background thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Subclasses say
    where replies come from (:meth:`_replies`) and may inject a status (:meth:`_injected`).

    Args:
        model_name: The model name served, or several names; others get a 404
            ``model_not_found``.
        api_key: If set, requests must carry ``Authorization: Bearer <api_key>`` or get
            a 401.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1`` once started.
        requests: Bodies of every chat request received, failed ones included.
        statuses: The status code answered to each chat request, in order.
    """

    def __init__(self, model_name: str | Sequence[str] = "tiny", api_key: str | None = None) -> None:
        self.model_names = (model_name,) if isinstance(model_name, str) else tuple(model_name)
        self.model_name = self.model_names[0]
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.base_url = ""
        self._lock = threading.Lock()  # guards requests, statuses and subclasses' counters
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def _load(self) -> None:
        """Load whatever the replies need; called once by :meth:`start`."""

    def start(self) -> ChatServer:
        """Load (see :meth:`_load`), bind a free port and serve in a daemon thread."""
        self._load()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chat-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what subclasses provide --------------------------------------------------------

    def _injected(self) -> int | None:
        """A status to answer this request with instead of replies (fault injection)."""
        return None

    def _replies(self, body: dict[str, Any], messages: list[dict[str, Any]], model: str, n: int) -> list[str]:
        raise NotImplementedError

    def _models_status(self) -> int | None:
        return None

    # -- request handling --------------------------------------------------------------

    def _auth_ok(self, header: str | None) -> bool:
        return self.api_key is None or header == f"Bearer {self.api_key}"

    def _chat(self, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, Any]]:
        """Answer one chat-completions body: (status, JSON payload)."""
        with self._lock:
            self.requests.append(body)
            injected = self._injected()
        try:
            status, payload = self._chat_status(body, auth, injected)
        except Exception as err:  # a crash in a reply becomes a 500, not a hang
            status, payload = 500, _error(500, f"{type(err).__name__}: {err}")
        with self._lock:
            self.statuses.append(status)
        return status, payload

    def _chat_status(self, body: dict[str, Any], auth: str | None, injected: int | None) -> tuple[int, dict[str, Any]]:
        if injected is not None:
            return injected, _error(injected, f"injected failure (HTTP {injected})")
        if not self._auth_ok(auth):
            return 401, _error(401, "Incorrect API key provided.", code="invalid_api_key")
        model = body.get("model")
        if model not in self.model_names:
            return 404, _error(404, f"The model '{body.get('model')}' does not exist.", code="model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, _error(400, "messages must be a non-empty list")
        texts = self._replies(body, messages, model, int(body.get("n") or 1))
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop", "logprobs": None}
            for i, t in enumerate(texts)
        ]
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def _models(self, auth: str | None) -> tuple[int, dict[str, Any]]:
        if not self._auth_ok(auth):
            return 401, _error(401, "Incorrect API key provided.", code="invalid_api_key")
        status = self._models_status()
        if status is not None:
            return status, _error(status, "injected failure")
        models = [{"id": name, "object": "model", "created": 0, "owned_by": "advisor"} for name in self.model_names]
        return 200, {"object": "list", "data": models}


class ScriptedServer(ChatServer):
    """A chat server whose replies come from a function, with failures injected on purpose.

    Args:
        reply: A function from the request's messages (and, if it takes a second
            argument, the requested model name) to one reply text; called once per choice.
        model_name: The model name served, or several names (a judge panel played by one
            function).
        api_key: If set, requests without ``Authorization: Bearer <api_key>`` get a 401.
        fail_first: Status codes answered, in order, to the first chat requests
            (e.g. ``[500, 429]``): injected transient failures.
        always_status: If set, every chat request is answered with this status.
        max_choices: Cap on the choices returned per request, to mimic servers that
            ignore ``n``.
        models_status: If set, ``GET /v1/models`` is answered with this status (a server
            that cannot list its models, as ``transformers serve`` answers 500 offline).
    """

    def __init__(
        self,
        reply: Reply,
        *,
        model_name: str | Sequence[str] = "tiny",
        api_key: str | None = None,
        fail_first: Sequence[int] = (),
        always_status: int | None = None,
        max_choices: int | None = None,
        models_status: int | None = None,
    ) -> None:
        super().__init__(model_name, api_key)
        self.reply = reply
        self._reply_takes_model = _takes_two_arguments(reply)
        self.fail_first = list(fail_first)
        self.always_status = always_status
        self.max_choices = max_choices
        self.models_status = models_status

    def _injected(self) -> int | None:
        return self.fail_first.pop(0) if self.fail_first else self.always_status

    def _models_status(self) -> int | None:
        return self.models_status

    def _replies(self, body: dict[str, Any], messages: list[dict[str, Any]], model: str, n: int) -> list[str]:
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        args = (messages, model) if self._reply_takes_model else (messages,)
        return [self.reply(*args) for _ in range(n)]


def _takes_two_arguments(function: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler_for(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read assertions, not logs
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(*server._models(self.headers.get("Authorization")))
            else:
                self._send(404, _error(404, f"no route {self.path}"))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, _error(400, "body is not JSON"))
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error(404, f"no route {self.path}"))
                return
            self._send(*server._chat(body, self.headers.get("Authorization")))

    return Handler
