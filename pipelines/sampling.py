"""Sample-and-verify, the loop that probe, rejection sampling and evaluate share.

``sample_and_verify`` generates ``n`` completions per prompt with a generation
backend, verifies them in batch, and writes one resumable shard per slice of
prompts: a killed run loses at most the shard in flight.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from advisor.errors import InputError, StageFailed
from pipelines.artifacts import Shards
from pipelines.context import StageContext


def generator_for(ctx: StageContext, model: str, on_progress: Any = None) -> Any:
    """The plan's generation backend for ``model`` (a local path is resolved against the plan)."""
    local = ctx.resolve(model)
    model_ref = str(local) if local.exists() else model
    seed = getattr(ctx.stage, "seed", 0)
    generator = backend_for(ctx.plan, model_ref, on_progress=on_progress, shown=model, seed=seed)
    ctx.generators.append(generator)  # released (engine shut down) when the stage ends: ctx.release
    return generator


def backend_for(
    plan: Any, model: str, backend: str | None = None, on_progress: Any = None, shown: str = "", seed: int = 0
) -> Any:
    """A generation backend for ``model`` with the plan's compute settings (``backend`` overrides the plan's)."""
    from pipelines.generation import GenerationError, make_generator

    quiet_libraries()
    backend = backend or plan.models.backend
    options: dict[str, Any] = {}
    if backend == "hf":
        options = {
            "batch_size": plan.compute.generation_batch_size,
            "on_progress": on_progress,
            "threads": plan.compute.threads_per_process(),
        }
    elif backend == "vllm":
        # compute.vllm as it is: None leaves a choice to the device the engine finds
        options = {"tensor_parallel_size": plan.compute.tensor_parallel_size, "seed": seed}
        options.update(plan.compute.vllm.model_dump())
    elif backend == "openai":
        options = {"base_url": plan.models.base_url, "api_key": os.environ.get(plan.models.api_key_env)}
    try:
        return make_generator(backend, model, **options)
    except GenerationError as exc:
        raise StageFailed(f"{backend} backend, model {shown or model}: {exc.message}") from None
    except OSError as exc:  # transformers: not a model directory, no hub access
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"models: cannot load {shown or model!r} with the {backend} backend: {first}") from None


def quiet_libraries() -> None:
    """Our progress bars replace the libraries' own (weights loading, shard writing)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


#: Verifiers that grade with a model of their own: their ``model`` option is a path or hub id.
MODEL_VERIFIERS = ("judge", "reward_model")


def verifier_options(plan: Any, plan_dir: Path | None = None) -> dict[str, Any]:
    """The plan's verifier options, a judge's or reward model's local ``model`` resolved against the plan.

    A judge with no ``model`` option takes ``models.judges`` (several make a panel).
    """
    options = dict(plan.verifier.options)
    if plan.verifier.name not in MODEL_VERIFIERS:
        return options
    if plan.verifier.name == "judge" and not options.get("model") and plan.models.judges:
        options["model"] = list(plan.models.judges)
    model = options.get("model")
    if plan_dir is not None and model:
        names = [model] if isinstance(model, str) else list(model)
        resolved = [_resolve(plan_dir, m) for m in names]
        options["model"] = resolved[0] if isinstance(model, str) else resolved
    if plan_dir is not None and isinstance(options.get("heldout"), str):
        options["heldout"] = _resolve(plan_dir, options["heldout"])
    return options


def _resolve(plan_dir: Path, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    local = plan_dir / path
    return str(local) if value.startswith(".") or local.exists() else value


def verifier_for(plan: Any, plan_dir: Path | None = None) -> Any:
    """The plan's verifier; a judge gets its generation backends built here (one per judge model)."""
    import verifiers

    options = verifier_options(plan, plan_dir)
    if plan.verifier.name == "judge":
        models = options.get("model")
        if not models:
            raise InputError("verifier.options.model: the judge needs a model (or list models.judges)")
        names = [models] if isinstance(models, str) else list(models)
        backend = options.get("backend")
        options["generator"] = {m: backend_for(plan, m, backend) for m in names}
    return verifiers.get(plan.verifier.name, **options)


def prompt_text(prompt: Any) -> str:
    """A model input as text: a string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else ""


def references_for(verifier: Any, prompts: list[Any], references: list[Any]) -> list[Any]:
    """What ``verify_batch`` needs: a judge or reward model also sees the prompt (``{"question", "reference"}``)."""
    if not getattr(verifier, "needs_prompt", False):
        return list(references)
    return [{"question": prompt_text(p), "reference": r} for p, r in zip(prompts, references, strict=True)]


def sample_and_verify(
    ctx: StageContext,
    generator: Any,
    verifier: Any,
    prompts: list[Any],
    references: list[Any],
    folder: Path,
    n: int,
    options: Any,
    label: str,
    extra: list[dict[str, Any]] | None = None,
    progress_total: int | None = None,
) -> list[dict[str, Any]]:
    """Generate ``n`` samples per prompt, verify them, and return one row per sample.

    Rows: ``prompt_index``, ``sample_index``, ``prompt``, ``sample``, ``reference``,
    ``passed``, ``score``, ``reason``, ``extracted``, plus ``extra[prompt_index]``.
    """
    from pipelines.generation import GenerationError

    shards = Shards(folder, total=len(prompts), size=options.shard_size)
    sampler = SamplerCheck(label, describe_backend(ctx.plan), n, options.temperature)
    with ctx.progress(label, total=len(prompts)) as advance:
        advance(shards.finished_items())
        for shard in shards.pending():
            batch = prompts[shard.start : shard.stop]
            seed = None if options.seed is None else options.seed + shard.index
            try:
                outputs = generator.generate(
                    batch,
                    n=n,
                    temperature=options.temperature,
                    top_p=options.top_p,
                    max_new_tokens=options.max_new_tokens,
                    seed=seed,
                    stop=None,
                )
            except GenerationError as exc:
                raise StageFailed(f"{label}: generation failed: {exc.message}") from None
            sampler.add(outputs)
            flat = [(i, j, text) for i, samples in enumerate(outputs) for j, text in enumerate(samples)]
            refs = [references[shard.start + i] for i, _, _ in flat]
            verdicts = verifier.verify_batch(
                [t for _, _, t in flat], refs, workers=ctx.plan.compute.threads_per_process()
            )
            rows = []
            for (i, j, text), ref, v in zip(flat, refs, verdicts, strict=True):
                p = shard.start + i
                row = {
                    "prompt_index": p,
                    "sample_index": j,
                    "prompt": prompts[p],
                    "sample": text,
                    "reference": ref,
                    "passed": v.passed,
                    "score": v.score,
                    "reason": v.reason,
                    "extracted": v.extracted,
                    "gradable": v.gradable,
                }
                if "judges" in v.meta:  # a judge panel's votes, for its agreement
                    row["judges"] = v.meta["judges"]
                if extra is not None:
                    row.update(extra[p])
                rows.append(row)
            shards.write(shard, rows)
            advance(shard.stop - shard.start)
    return shards.read_all()


def describe_backend(plan: Any) -> str:
    """``the openai backend at URL`` / ``the hf backend``: for messages about generation."""
    where = f" at {plan.models.base_url}" if plan.models.backend == "openai" and plan.models.base_url else ""
    return f"the {plan.models.backend} backend{where}"


class SamplerCheck:
    """Stops a stage whose backend does not really sample.

    A server that ignores ``n`` or ``temperature`` (``transformers serve`` does both)
    returns the same text ``n`` times, and pass@k silently becomes pass@1. At a
    temperature of at least :attr:`MIN_TEMPERATURE`, ``n`` identical samples of
    :attr:`MIN_CHARS` characters or more happen by chance only on a sharply peaked
    prompt; on most prompts at once they mean the sampler is broken. Short answers
    (``"42"``) are left out: a confident model repeats those honestly.
    """

    MIN_TEMPERATURE = 0.5
    MIN_CHARS = 20
    MIN_PROMPTS = 8
    MAX_IDENTICAL_SHARE = 0.8

    def __init__(self, label: str, backend: str, n: int, temperature: float) -> None:
        self.label, self.backend, self.n, self.temperature = label, backend, n, temperature
        self.active = n >= 2 and temperature >= self.MIN_TEMPERATURE
        self.checked = 0
        self.identical = 0

    def add(self, outputs: list[list[str]]) -> None:
        """Count one batch's prompts; raise :class:`StageFailed` once most are copies."""
        if not self.active:
            return
        for samples in outputs:
            if len(samples) >= 2 and max(len(s.strip()) for s in samples) >= self.MIN_CHARS:
                self.checked += 1
                self.identical += len(set(samples)) == 1
        if self.checked >= self.MIN_PROMPTS and self.identical > self.MAX_IDENTICAL_SHARE * self.checked:
            raise StageFailed(
                f"{self.label}: {self.backend} returned {self.n} identical samples for {self.identical} of "
                f"{self.checked} prompts at temperature {self.temperature:g}: it ignores n or temperature "
                "(transformers serve does), so pass@k would be pass@1; use a server that samples, such as vLLM's"
            )


def per_prompt_counts(rows: list[dict[str, Any]], num_prompts: int) -> list[tuple[int, int]]:
    """(samples, correct) for each prompt index, over gradable samples."""
    n = [0] * num_prompts
    c = [0] * num_prompts
    for r in rows:
        if r.get("gradable", True):
            n[r["prompt_index"]] += 1
            c[r["prompt_index"]] += int(bool(r["passed"]))
    return list(zip(n, c, strict=True))
