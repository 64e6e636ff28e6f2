"""The ``openai`` backend: any OpenAI-compatible chat-completions server."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from pipelines.generation.base import (
    GenerationError,
    ProgressCallback,
    Prompt,
    _check_args,
    to_messages,
    truncate_at_stop,
)


class _Aborted(Exception):
    """Another request of the same call failed for good; this one stops quietly."""


class OpenAIGenerator:
    """Generate through an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    Args:
        model: The model name the server knows (``GET {base_url}/models`` lists them).
        base_url: Server URL ending in ``/v1``; default ``$OPENAI_BASE_URL``, else
            OpenAI's own.
        api_key: Default ``$OPENAI_API_KEY``, else ``"EMPTY"`` (local servers such as
            ``vllm serve`` without ``--api-key`` accept anything).
        max_concurrency: Requests in flight at once (one request per prompt).
        max_retries: Retries per request after a 429, a 5xx or a connection error.
        retry_base_delay: Seconds before the first retry; doubles every retry.
        max_retry_delay: Cap on one backoff wait, in seconds.
        timeout: Seconds per HTTP request.
        on_progress: Called with the number of prompts done, after each one.

    Attributes:
        retries: Retries made so far, over all calls (tests and logs read it).
        requests: Requests sent so far, retries included.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        retry_base_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        timeout: float = 120.0,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        import openai

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # Our own retry loop instead of the client's, so the policy is visible and testable.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=timeout)
        self.where = str(self.client.base_url).rstrip("/")
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.max_retry_delay = max_retry_delay
        self.on_progress = on_progress
        self.retries = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._abort = threading.Event()

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int | None = 0,
        stop: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """Sample ``n`` completions per prompt; see :class:`Generator`."""
        _check_args(n, temperature, top_p, max_new_tokens)
        params: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens}
        stops = [s for s in stop if s] if stop else []
        if stops:
            params["stop"] = stops
        results: list[list[str]] = [[] for _ in prompts]
        if not prompts:
            return results
        self._abort.clear()
        done = 0
        workers = min(self.max_concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-gen") as pool:
            futures = {pool.submit(self._complete, to_messages(p), n, seed, params): i for i, p in enumerate(prompts)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = [truncate_at_stop(t, stops) for t in future.result()]
                    done += 1
                    if self.on_progress is not None:
                        self.on_progress(done)
            except BaseException as err:
                # Fail fast: queued requests never start, running ones stop retrying.
                self._abort.set()
                for future in futures:
                    future.cancel()
                if isinstance(err, _Aborted):
                    # A request that stopped because another failed finished first:
                    # raise the failure itself.
                    pool.shutdown(wait=True)
                    raise _first_real_error(futures)  # noqa: B904 (keeps its own cause)
                raise
        return results

    def _complete(self, messages: list[dict[str, str]], n: int, seed: int | None, params: dict[str, Any]) -> list[str]:
        """All ``n`` completions for one conversation, topping up if the server gives fewer."""
        texts = self._request(messages, n, seed, params)
        # Some servers ignore n (or cap it): ask for the rest one at a time, each with
        # its own seed so they are not copies of each other.
        while len(texts) < n:
            more = self._request(messages, 1, None if seed is None else seed + len(texts), params)
            if not more:
                raise GenerationError(f"server at {self.where} returned no choices for model {self.model!r}")
            texts += more[:1]
        return texts[:n]

    def _request(self, messages: list[dict[str, str]], n: int, seed: int | None, params: dict[str, Any]) -> list[str]:
        """One chat-completions call with retries; returns the choices' texts."""
        import openai

        extra = {} if seed is None else {"seed": seed}
        for attempt in range(self.max_retries + 1):
            if self._abort.is_set():
                raise _Aborted
            with self._lock:
                self.requests += 1
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=messages, n=n, **params, **extra
                )
                choices = sorted(response.choices, key=lambda c: c.index)
                return [c.message.content or "" for c in choices]
            except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
                self._abort.set()  # the other requests would fail the same way: stop them now
                raise GenerationError(
                    f"authentication failed at {self.where} (HTTP {err.status_code}): "
                    "check the api_key option or OPENAI_API_KEY"
                ) from err
            except openai.NotFoundError as err:
                self._abort.set()
                raise GenerationError(
                    f"model {self.model!r} not found at {self.where} (HTTP 404): {self._served_models()}"
                ) from err
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as err:
                if attempt == self.max_retries:
                    raise GenerationError(
                        f"{self.where} still failing after {attempt + 1} attempts: {_describe(err)}"
                    ) from err
                with self._lock:
                    self.retries += 1
                delay = min(self.max_retry_delay, self.retry_base_delay * 2**attempt)
                if self._abort.wait(delay):  # wakes early if the call is being abandoned
                    raise _Aborted from err
            except openai.APIStatusError as err:
                raise GenerationError(
                    f"request rejected by {self.where} (HTTP {err.status_code}): {_describe(err)}"
                ) from err
        raise AssertionError("unreachable")  # the loop returns or raises

    def _served_models(self) -> str:
        """What to check after a 404: the names the server lists, if it can list them."""
        import openai

        hint = "check the model name and that the base URL ends in /v1"
        try:
            names = [m.id for m in self.client.models.list()]
        except openai.APIError as err:  # some servers cannot list (transformers serve answers 500)
            return f"{hint} (the server does not list its models: {_describe(err)})"
        if not names:
            return hint
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"the server serves {shown}; {hint}"


def _first_real_error(futures: Any) -> BaseException:
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None and not isinstance(error, _Aborted):
            return error
    return GenerationError("generation was abandoned")  # not reached: an abort has a cause


def _describe(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    text = " ".join(str(message).split())  # one line
    return f"HTTP {status}: {text}" if status else text
