"""Generation backends: one interface, three engines.

Every stage that samples from a model (probe, synthesize, rejection sampling, evaluate,
LLM judges) calls one method::

    generator = make_generator("hf", "path/to/model", batch_size=16)
    completions = generator.generate(prompts, n=8, temperature=1.0, top_p=1.0,
                                     max_new_tokens=256, seed=0, stop=["\\n\\n"])
    # completions[i][j] is the j-th sample for prompts[i]: n per prompt, order kept.

A prompt is either a plain string or a conversation, a list of
``{"role": ..., "content": ...}`` messages. Conversations go through the model's own
chat template (``tokenizer.apply_chat_template(..., add_generation_prompt=True)``); plain
strings are fed as they are, with the tokenizer's usual special tokens (a ``<bos>``).
Completions are the new text only, special tokens removed, cut before the first ``stop``
string. ``temperature=0`` means greedy decoding; ``seed`` makes sampling repeatable.

The backends, chosen in the plan's ``compute`` section:

* ``hf`` (:class:`HFGenerator`): ``transformers`` on CPU or one GPU. Prompts are
  repeated ``n`` times and decoded in left-padded batches, longest first. The batch size
  starts at ``batch_size`` and halves whenever a batch runs out of memory, so a too
  ambitious setting costs one retry rather than the run. Same seed, same batch size,
  same outputs.
* ``vllm`` (:class:`VLLMGenerator`): ``vllm.LLM`` on one or more GPUs
  (``tensor_parallel_size``); ``llm.chat`` for conversations, ``llm.generate`` for
  strings. vLLM is imported only when this backend is built.
* ``openai`` (:class:`OpenAIGenerator`): any OpenAI-compatible chat-completions server
  (vLLM's ``vllm serve``, a hosted API, :mod:`pipelines.openai_server` in tests). Plain
  strings become one user message. Requests run on a bounded thread pool; 429, 5xx and
  connection errors are retried with exponential backoff; bad keys (401/403) and unknown
  models (404) fail at once with one clear line.

All failures a user can fix are raised as :class:`GenerationError` with a one-line
message; the CLI prints it and exits with code 1.

Example:
    >>> from pipelines.generation import make_generator
    >>> gen = make_generator("hf", "runs/student")  # doctest: +SKIP
    >>> gen.generate(["12+34="], n=2, temperature=0)  # doctest: +SKIP
    [['46', '46']]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

Message = Mapping[str, str]
Prompt = str | Sequence[Message]
ProgressCallback = Callable[[int], None]
BACKENDS = ("hf", "vllm", "openai")


class GenerationError(Exception):
    """A generation failure the user can act on (auth, unknown model, out of memory...).

    Args:
        message: One line saying what failed and what to do about it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Generator(Protocol):
    """What every backend provides; stages depend on this and nothing else."""

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
        """Sample ``n`` completions for each prompt.

        Args:
            prompts: Plain strings or conversations (lists of role/content messages).
            n: Completions per prompt.
            temperature: Sampling temperature; 0 means greedy.
            top_p: Nucleus sampling mass; 1.0 disables it.
            max_new_tokens: Upper bound on each completion's length in tokens.
            seed: Makes sampling repeatable; ``None`` for fresh randomness.
            stop: Strings that end a completion; the stop string itself is dropped.

        Returns:
            ``result[i]`` holds the ``n`` completions of ``prompts[i]``.
        """
        ...


def is_conversation(prompt: Prompt) -> bool:
    """Whether ``prompt`` is a list of chat messages rather than a plain string."""
    return not isinstance(prompt, str)


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string becomes one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` before the earliest occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def _check_args(n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


# --------------------------------------------------------------------------------------
# hf: transformers
# --------------------------------------------------------------------------------------


def _is_out_of_memory(err: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError subclasses RuntimeError; MPS and older CUDA paths
    # raise a plain RuntimeError whose message says "out of memory".
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class HFGenerator:
    """Generate with ``transformers`` on CPU or one GPU, in adaptive left-padded batches.

    Args:
        model: A model directory (or hub id, where a hub is reachable).
        batch_size: Sequences per forward batch to start with (``n`` copies of a prompt
            count as ``n`` sequences). Halved on out-of-memory, down to 1.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"`` (float32 on
            CPU, bfloat16 on GPU).
        on_progress: Called after every batch with the number of prompts whose ``n``
            completions are all done; the stage runner drives a progress bar with it.

    Attributes:
        batch_size: The current batch size (smaller after an out-of-memory retry).
        oom_retries: How many batches were retried at a halved size.
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "auto",
        on_progress: ProgressCallback | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "float32" if self.device == "cpu" else "bfloat16"
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.model_name = str(model)
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.oom_retries = 0
        # The model's own end-of-turn ids (chat models often have several).
        eos = self.model.generation_config.eos_token_id
        self._eos_token_id = eos if eos is not None else self.tokenizer.eos_token_id

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids for one prompt: chat template for conversations, plain otherwise."""
        if isinstance(prompt, str):
            return self.tokenizer(prompt)["input_ids"]
        if not self.tokenizer.chat_template:
            raise GenerationError(
                f"model {self.model_name} has no chat template: pass plain-string prompts or a chat model"
            )
        text = self.tokenizer.apply_chat_template(to_messages(prompt), tokenize=False, add_generation_prompt=True)
        # The template already holds the special tokens (bos, role markers).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

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
        encoded = [self.encode(p) for p in prompts]
        rows = [(i, j) for i in range(len(prompts)) for j in range(n)]  # (prompt, sample)
        # Longest first: similar lengths share a batch (less padding), and a batch that
        # runs out of memory does so at the start, not after an hour.
        order = sorted(range(len(rows)), key=lambda r: (-len(encoded[rows[r][0]]), r))
        results = [[""] * n for _ in prompts]
        remaining = [n] * len(prompts)
        finished = 0
        pos = 0
        while pos < len(order):
            chunk = order[pos : pos + self.batch_size]
            try:
                texts = self._generate_batch(
                    [encoded[rows[r][0]] for r in chunk],
                    temperature=temperature,
                    top_p=top_p,
                    max_new_tokens=max_new_tokens,
                    # Seeded per batch offset, so a retried batch draws the same numbers;
                    # the multiplier keeps calls seeded 0, 1, 2... (one per shard) apart.
                    seed=None if seed is None else (seed * 1_000_003 + pos) % 2**63,
                    stop=stop,
                )
            except RuntimeError as err:
                if not _is_out_of_memory(err):
                    raise
                if self.batch_size == 1:
                    raise GenerationError(
                        f"out of memory generating with {self.model_name} even at batch size 1: "
                        "lower max_new_tokens, use a smaller model, or a larger device"
                    ) from err
                self.batch_size //= 2
                self.oom_retries += 1
                _release_cuda_cache()
                continue
            for r, text in zip(chunk, texts, strict=True):
                i, j = rows[r]
                results[i][j] = truncate_at_stop(text, stop)
                remaining[i] -= 1
                finished += remaining[i] == 0
            pos += len(chunk)
            if self.on_progress is not None:
                self.on_progress(finished)
        return results

    def _generate_batch(
        self,
        batch: list[list[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int | None,
        stop: Sequence[str] | None,
    ) -> list[str]:
        """Decode one left-padded batch and return the new text of each row."""
        import torch
        from transformers import GenerationConfig

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        sampling = temperature > 0
        # A fresh config, not the model's: the same knobs mean the same thing on every
        # backend (no silent top_k=50 or repetition penalty from generation_config.json).
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            pad_token_id=pad,
            eos_token_id=self._eos_token_id,
            **({"temperature": temperature, "top_p": top_p, "top_k": 0} if sampling else {}),
        )
        extra: dict[str, Any] = {}
        if stop and any(stop):
            # Stop early; the text is still cut by truncate_at_stop afterwards.
            config.stop_strings = [s for s in stop if s]
            extra["tokenizer"] = self.tokenizer  # HF matches stop strings through it
        if seed is not None:
            torch.manual_seed(seed)  # seeds every device
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **extra
            )
        return self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)


def _release_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# vllm
# --------------------------------------------------------------------------------------


class VLLMGenerator:
    """Generate with ``vllm.LLM`` on one or more GPUs.

    Args:
        model: A model directory or hub id.
        tensor_parallel_size: GPUs to shard the model across.
        gpu_memory_utilization: Share of GPU memory vLLM may take (weights + KV cache).
        dtype: vLLM's ``dtype`` (``"auto"``, ``"bfloat16"``, ``"float16"``...).
        max_model_len: Context length cap; default the model's.
        on_progress: Called once, with the number of prompts, when a call finishes
            (vLLM batches everything in one call).
        **llm_options: Passed to ``vllm.LLM`` as they are (``enforce_eager``,
            ``enable_prefix_caching``, ``data_parallel_size``...).
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
        on_progress: ProgressCallback | None = None,
        **llm_options: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise GenerationError(
                "the vllm backend needs vLLM on a CUDA machine: pip install 'posttrain-advisor[vllm]'"
            ) from err
        self.model_name = str(model)
        self.on_progress = on_progress
        self.llm = LLM(
            model=str(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            **llm_options,
        )

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
        from vllm import SamplingParams

        _check_args(n, temperature, top_p, max_new_tokens)
        params = SamplingParams(
            n=n,
            temperature=temperature,  # vLLM treats 0 as greedy
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            seed=seed,  # vLLM derives seed + i for the i-th of the n samples
            stop=[s for s in stop if s] if stop else None,
            skip_special_tokens=True,
        )
        results: list[list[str]] = [[] for _ in prompts]
        plain = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if plain:
            outputs = self.llm.generate([prompts[i] for i in plain], sampling_params=params, use_tqdm=False)
            for i, out in zip(plain, outputs, strict=True):
                results[i] = self._texts(out, n, stop)
        if chats:
            outputs = self.llm.chat(
                [to_messages(prompts[i]) for i in chats],
                sampling_params=params,
                use_tqdm=False,
                add_generation_prompt=True,
            )
            for i, out in zip(chats, outputs, strict=True):
                results[i] = self._texts(out, n, stop)
        if self.on_progress is not None:
            self.on_progress(len(prompts))
        return results

    def _texts(self, request_output: Any, n: int, stop: Sequence[str] | None) -> list[str]:
        samples = sorted(request_output.outputs, key=lambda o: o.index)
        if len(samples) != n:
            raise GenerationError(f"vLLM returned {len(samples)} samples for a prompt, expected {n}")
        # vLLM already drops the stop string; cutting again is a no-op kept for symmetry.
        return [truncate_at_stop(s.text, stop) for s in samples]


# --------------------------------------------------------------------------------------
# openai: any OpenAI-compatible chat-completions server
# --------------------------------------------------------------------------------------


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
                    f"model {self.model!r} not found at {self.where} (HTTP 404): check the model name "
                    f"(GET {self.where}/models lists them) and that the base URL ends in /v1"
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


# --------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------


def make_generator(backend: str, model: str, **options: Any) -> Generator:
    """Build a generation backend by name, as the plan's ``compute`` section names it.

    Args:
        backend: ``"hf"``, ``"vllm"`` or ``"openai"``.
        model: Model directory, hub id, or (for ``openai``) the served model name.
        **options: Keyword arguments of the backend's class (``batch_size``,
            ``tensor_parallel_size``, ``base_url``, ``max_concurrency``...).

    Returns:
        An object with ``generate(prompts, n, temperature, top_p, max_new_tokens,
        seed, stop)``.

    Raises:
        ValueError: If ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend == "hf":
        return HFGenerator(model, **options)
    if backend == "vllm":
        return VLLMGenerator(model, **options)
    if backend == "openai":
        return OpenAIGenerator(model, **options)
    raise ValueError(f"unknown generation backend {backend!r}: choose one of {', '.join(BACKENDS)}")
