"""Stages ``sft``, ``psft``, ``dpo``, ``grpo``, ``rloo``, ``reward_model``: train with TRL.

Each training stage reads top to bottom: options, then data, then a job for TRL,
then training (in this process, or on several through :mod:`pipelines.training.launch`),
then the choice of checkpoint, then outputs.

What each kind trains on and with:

============  =======================  ==============================================
kind          TRL trainer              data
============  =======================  ==============================================
sft           ``SFTTrainer``           prompt/completion: an earlier rejection_sample's
                                       ``sft.jsonl``, else synthesize's, else
                                       ``data.train`` (prompt_field -> answer_field)
psft          ``SFTTrainer`` + the     as sft; loss clipped against an old policy
              PSFT loss                (:mod:`pipelines.training.losses`)
dpo           ``DPOTrainer``           prompt/chosen/rejected: rejection_sample's
                                       ``pairs.jsonl``, else ``data.train``
                                       (chosen_field, rejected_field)
reward_model  ``RewardTrainer``        pairs, as dpo (a held-out share scores it)
grpo, rloo    ``GRPOTrainer`` /        ``data.train`` prompts (+ ``general_mix`` of
              ``RLOOTrainer``          ``data.general``); reward: the plan's verifier
                                       through ``as_reward()``, or with
                                       ``reward: reward_model`` the trained reward model
============  =======================  ==============================================

Prompts from ``data.train`` are rendered like the probe's (its style and template),
so training and evaluation see the same inputs. The policy is the ``model/`` of the
last earlier training stage, else ``models.base``. ``lora: auto`` trains a LoRA
adapter (peft) for models above :data:`LORA_AUTO_PARAMETERS` and fine-tunes tiny
ones fully; adapters are merged into the saved model.

Checkpoints are chosen by task accuracy, not by loss (loss can fall while quality
falls): :data:`CHECKPOINTS` evenly spaced checkpoints are saved; each is scored by
greedy pass@1 on up to :data:`EVAL_PROMPTS` validation prompts with the plan's
verifier (a reward model: by pairwise accuracy on held-out pairs); the best becomes
``model/``. Validation prompts are ``data.validation``, else a seeded share held out
of ``data.train`` (and left out of training), never ``data.eval``, where the gain is
reported; ``metrics.json`` names the split (``checkpoint_eval.source``). A killed
stage resumes from its last checkpoint on the next run.

Disk: while training, only the newest checkpoint keeps its optimizer state (what a
resume needs); older ones keep their weights until they are scored. Once ``model/`` is
written, ``checkpoints/`` is deleted.

Inputs: the plan, earlier stages' outputs (above). Outputs: ``model/`` (weights and
tokenizer, ``from_pretrained``-ready), ``train.jsonl``, ``job.json``, ``metrics.json`` (``log_history``: the
loss/reward/KL curves; every checkpoint's score; the hyperparameters used).
Run alone: ``advisor run plan.yaml --only sft`` (or psft, dpo, grpo, rloo, reward_model).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from advisor.errors import InputError, StageFailed
from pipelines import curation
from pipelines.artifacts import read_jsonl, write_json, write_jsonl
from pipelines.context import StageContext, StageResult
from pipelines.data import VALIDATION_MIN_ROWS, load_rows, render_prompts, sample_rows, training_splits
from pipelines.sampling import quiet_libraries, verifier_for, verifier_options
from pipelines.training.checkpoints import CHECKPOINTS, choose, materialize, score_checkpoints

#: Above this many parameters ``lora: auto`` trains a LoRA adapter instead of every weight.
LORA_AUTO_PARAMETERS = 250_000_000
#: Eval prompts (a seeded sample) that score each checkpoint.
EVAL_PROMPTS = 64
#: Reward models: the share of pairs held out to score checkpoints, and its cap.
HELDOUT_SHARE, HELDOUT_MAX = 0.1, 64


# ---- inputs: the policy and the data ----


def render(ctx: StageContext, rows: list[dict[str, Any]], field: str) -> list[Any]:
    """Model inputs for ``rows[i][field]``, in the probe's style (strings, or chats when ``models.chat``)."""
    plan, prompts = ctx.plan, ctx.prompts
    return render_prompts(rows, field, prompts.style, plan.task.kind, plan.models.chat, inline=prompts.template)


def as_turn(prompt: Any, text: Any) -> Any:
    """A completion in the prompt's form: assistant messages after a chat, text after a string."""
    if isinstance(prompt, list):
        return text if isinstance(text, list) else [{"role": "assistant", "content": str(text)}]
    if isinstance(text, list):
        return "".join(str(m.get("content", "")) for m in text if isinstance(m, dict))
    return str(text)


def earlier_file(ctx: StageContext, kinds: tuple[str, ...], name: str) -> Path | None:
    """``name`` in the last finished earlier stage of the first of ``kinds`` that has it."""
    for kind in kinds:
        folder = ctx.earlier(kind)
        if folder is not None and (folder / name).exists():
            return folder / name
    return None


def load_sft_rows(ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """prompt/completion rows: verified samples, else teacher solutions, else the gold answers."""
    plan = ctx.plan
    found = earlier_file(ctx, ("rejection_sample", "synthesize"), "sft.jsonl")
    if found is not None:
        rows = [{"prompt": r["prompt"], "completion": as_turn(r["prompt"], r["completion"])} for r in read_jsonl(found)]
        source = f"{found.parent.name}/{found.name}"
    else:
        if not plan.data.train:
            raise InputError(f"{ctx.stage.kind}: no training data: set data.train or run rejection_sample first")
        raw = training_splits(plan.data, ctx.plan_dir, fields=(plan.data.answer_field,)).train
        prompts = render(ctx, raw, plan.data.prompt_field)
        rows = [
            {"prompt": p, "completion": as_turn(p, r[plan.data.answer_field])}
            for p, r in zip(prompts, raw, strict=True)
            if r[plan.data.answer_field] not in (None, "")
        ]
        source = "data.train"
    return [r for r in rows if r["completion"]], source


def load_pair_rows(ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """prompt/chosen/rejected rows: rejection sampling's right/wrong pairs, else the user's pairs."""
    plan = ctx.plan
    found = earlier_file(ctx, ("rejection_sample",), "pairs.jsonl")
    if found is not None:
        raw, source = read_jsonl(found), f"{found.parent.name}/{found.name}"
        prompts = [r["prompt"] for r in raw]
        chosen, rejected = "chosen", "rejected"
    else:
        if not plan.data.train:
            raise InputError(f"{ctx.stage.kind}: no preference pairs: set data.train or run rejection_sample first")
        chosen, rejected = plan.data.chosen_field, plan.data.rejected_field
        raw = training_splits(plan.data, ctx.plan_dir, fields=(chosen, rejected)).train
        prompts, source = render(ctx, raw, plan.data.prompt_field), "data.train"
    rows = [
        {"prompt": p, "chosen": as_turn(p, r[chosen]), "rejected": as_turn(p, r[rejected])}
        for p, r in zip(prompts, raw, strict=True)
    ]
    return [r for r in rows if r["chosen"] and r["rejected"]], source


def load_rl_rows(ctx: StageContext) -> tuple[list[dict[str, Any]], str]:
    """Prompts with their reference answer (the verifier's ``reference`` column), plus general prompts."""
    plan, opts = ctx.plan, ctx.stage
    if not plan.data.train:
        raise InputError(f"{opts.kind}: set data.train: online RL needs training prompts")
    raw = training_splits(plan.data, ctx.plan_dir).train
    prompts = render(ctx, raw, plan.data.prompt_field)
    refs = [_reference(r.get(plan.data.answer_field)) for r in raw]
    rows = [{"prompt": p, "reference": ref} for p, ref in zip(prompts, refs, strict=True)]
    source = "data.train"
    if plan.data.general and opts.general_mix > 0:
        # general_mix is the share of the final pool: n_general / (n_task + n_general)
        general = load_rows(plan.data.general, ctx.plan_dir, label="data.general")
        field = plan.data.prompt_field if general and plan.data.prompt_field in general[0] else "prompt"
        if general and field not in general[0]:
            raise InputError(f"data.general: no field {plan.data.prompt_field!r} or 'prompt' in {plan.data.general}")
        # No reference: a verifier reward is None (no signal) there; the KL term and a reward model still apply
        extra = [{"prompt": p, "reference": None} for p in render(ctx, general, field)]
        rows, log = curation.mix_general(rows, extra, share=opts.general_mix, seed=opts.seed)
        for warning in log.warnings:
            ctx.console.print(f"  [yellow]data.general: {warning}[/yellow]")
        source += f" + {log.details['general']} general prompts ({opts.general_mix:.0%})"
    return rows, source


def _reference(value: Any) -> Any:
    """References as strings (a list of accepted answers stays a list), so datasets gets one type."""
    if value is None or isinstance(value, list):
        return value
    return str(value)


def count_parameters(model: str) -> int:
    """Parameters of a causal LM, counted on the meta device (no weights are loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model)
    except OSError as exc:  # not a model directory, no hub access
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"models: cannot read the config of {model!r}: {first}") from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in skeleton.parameters())


def use_lora(setting: str, model: str) -> tuple[bool, int]:
    """Whether to train a LoRA adapter (``lora: auto|yes|no``), and the model's parameter count."""
    parameters = count_parameters(model)
    if setting == "auto":
        return parameters > LORA_AUTO_PARAMETERS, parameters
    return setting == "yes", parameters


# ---- the job: everything TRL needs, as JSON ----


def build_job(ctx: StageContext, policy: str, lora: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the training data and ``job.json``; return the job and facts for the metrics."""
    import torch

    plan, opts = ctx.plan, ctx.stage
    kind = opts.kind
    facts: dict[str, Any] = {}
    heldout: list[dict[str, Any]] = []
    if kind in ("sft", "psft"):
        rows, source = load_sft_rows(ctx)
    elif kind in ("dpo", "reward_model"):
        rows, source = load_pair_rows(ctx)
        if kind == "reward_model" and len(rows) >= 10:
            random.Random(opts.seed).shuffle(rows)
            n = min(HELDOUT_MAX, max(1, round(len(rows) * HELDOUT_SHARE)))
            heldout, rows = rows[:n], rows[n:]
    else:
        rows, source = load_rl_rows(ctx)
    if not rows:
        raise StageFailed(f"{kind}: no training rows from {source}")
    write_jsonl(ctx.dir / "train.jsonl", rows)
    if heldout:
        write_jsonl(ctx.dir / "heldout.jsonl", heldout)
    job: dict[str, Any] = {
        "kind": kind,
        "options": opts.model_dump(mode="json", exclude={"why"}),
        "policy": policy,
        "train_file": str(ctx.dir / "train.jsonl"),
        "heldout_file": str(ctx.dir / "heldout.jsonl") if heldout else None,
        "output_dir": str(ctx.dir / "checkpoints"),
        "result_file": str(ctx.dir / "train-result.json"),
        "lora": lora,
        "checkpoints": CHECKPOINTS,
        "world_size": plan.compute.num_processes,
        "threads": plan.compute.threads_per_process(),
    }
    if kind in ("grpo", "rloo"):
        job["reward"] = reward_spec(ctx)
        job["use_vllm"] = vllm_usable() and torch.cuda.is_available()
        job["tensor_parallel_size"] = plan.compute.tensor_parallel_size
        facts["reward"] = job["reward"]
        facts["use_vllm"] = job["use_vllm"]
    facts.update(data=source, rows=len(rows), heldout_pairs=len(heldout))
    write_json(ctx.dir / "job.json", job)
    return job, facts


def reward_spec(ctx: StageContext) -> dict[str, Any]:
    """grpo/rloo's reward: the trained reward model's folder, or the plan's verifier by name."""
    plan, opts = ctx.plan, ctx.stage
    if opts.reward == "reward_model":
        found = ctx.earlier_stage("reward_model")
        if found is None:
            raise InputError(f"{opts.kind}: reward: reward_model needs a finished reward_model stage before it")
        return {"model": str(found[1] / "model")}
    options = verifier_options(plan, ctx.plan_dir)
    if plan.verifier.name == "judge":
        options.setdefault("backend", plan.models.backend)  # the training process builds the judge's backends
    return {"verifier": plan.verifier.name, "options": options}


def vllm_usable() -> bool:
    """vLLM is installed (TRL then generates with it, colocated on the training GPUs)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def train(ctx: StageContext, job: dict[str, Any]) -> dict[str, Any]:
    """Run the job here, or on ``compute.num_processes`` ranks."""
    from pipelines.training.job import run_job, step_reporter

    n = ctx.plan.compute.num_processes
    if n > 1:
        from pipelines.training.launch import launch

        return launch(ctx.dir / "job.json", n, ctx.plan.compute.distributed, ctx.console)
    reporter = step_reporter(ctx.progress)
    try:
        return run_job(job, callbacks=[reporter])
    finally:
        reporter.stack.close()  # the progress bar, should training raise


def eval_set(ctx: StageContext) -> tuple[list[Any], list[Any], str | None]:
    """Up to EVAL_PROMPTS validation prompts to choose checkpoints on, rendered like the probe's.

    ``data.validation`` when the plan has it, else prompts held out of ``data.train``
    (:func:`pipelines.data.training_splits`; the training rows exclude them). Never
    ``data.eval``: ``evaluate`` reports the gain there, and a choice made on those
    prompts would inflate it. With neither (too few training rows), nothing is
    scored and the last checkpoint is kept; the metrics say so.
    """
    plan = ctx.plan
    splits = training_splits(plan.data, ctx.plan_dir)
    rows = sample_rows(splits.validation, EVAL_PROMPTS, seed=0)
    return (
        render(ctx, rows, plan.data.prompt_field),
        [r.get(plan.data.answer_field) for r in rows],
        splits.validation_source,
    )


def no_validation_reason(prompts: list[Any]) -> str:
    if prompts:
        return "the verifier could grade no validation prompt"
    return (
        f"no validation prompts: set data.validation, or give data.train at least {VALIDATION_MIN_ROWS} rows "
        "to hold some out (data.eval is never used: the gain is reported there)"
    )


def eval_max_new_tokens(ctx: StageContext) -> int:
    """The probe's generation length, so checkpoints are judged as the probe judged the base model."""
    probe = ctx.prompts.probe
    if probe is not None:
        return probe.max_new_tokens
    return getattr(ctx.stage, "max_new_tokens", 512)


# ---- the stage ----


def run(ctx: StageContext) -> StageResult:
    """Train the stage's kind on its data, choose the best checkpoint, save it as ``model/``."""
    import torch

    quiet_libraries()
    opts = ctx.stage
    compute = ctx.plan.compute
    torch.set_num_threads(compute.threads_per_process())  # training in this process, and scoring checkpoints
    if opts.kind == "psft" and compute.num_processes > 1 and compute.distributed == "fsdp":
        raise InputError("compute.distributed: psft keeps a full copy of the old policy, which fsdp cannot; use ddp")
    source = ctx.policy
    local = ctx.resolve(source)
    policy = str(local) if local.exists() else source
    lora, parameters = use_lora(opts.lora, policy)
    job, facts = build_job(ctx, policy, lora)
    ctx.console.print(
        f"  {opts.kind}: {facts['rows']} rows from {facts['data']}; policy {source} "
        f"({parameters / 1e6:.1f}M parameters, {'LoRA' if lora else 'full fine-tuning'})"
    )
    result = train(ctx, job)
    if result["resumed_from_step"]:
        ctx.console.print(f"  resumed from checkpoint-{result['resumed_from_step']}")
    if result["per_device_batch_size"] != opts.batch_size:
        ctx.console.print(
            f"  [yellow]batch_size {opts.batch_size} raised to {result['per_device_batch_size']} per device: "
            f"TRL needs whole groups of num_generations ({opts.num_generations}) per batch[/yellow]"
        )

    key = "pairwise_accuracy" if opts.kind == "reward_model" else "eval_pass@1"
    prompts, refs, eval_source = eval_set(ctx) if key == "eval_pass@1" else ([], [], None)
    verifier = verifier_for(ctx.plan, ctx.plan_dir) if prompts else None
    rows = score_checkpoints(ctx, job, result, prompts, refs, verifier, eval_max_new_tokens(ctx))
    if not rows:
        raise StageFailed(f"{opts.kind}: training saved no checkpoint in {job['output_dir']}")
    best = choose(rows, key)
    materialize(Path(best["path"]), ctx.dir / "model", lora, opts.kind == "reward_model", policy)
    # model/ holds the chosen weights now; checkpoints (optimizer state: twice the model) only served a resume
    shutil.rmtree(job["output_dir"], ignore_errors=True)

    checkpoints = [{k: v for k, v in r.items() if k != "path"} for r in rows]  # score + output diversity
    metrics = {
        "kind": opts.kind,
        "policy": source,
        "parameters": parameters,
        "lora": lora,
        **facts,
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        "seconds_per_step": result["seconds_per_step"],
        "world_size": result["world_size"],
        "resumed_from_step": result["resumed_from_step"],
        "checkpoints": checkpoints,
        "chosen_checkpoint": best["step"],
        "chosen_by": key if best[key] is not None else "last step (no checkpoint could be scored)",
        "hyperparameters": {**job["options"], "per_device_batch_size": result["per_device_batch_size"]},
        "log_history": result["log_history"],
    }
    if key == "eval_pass@1":
        metrics["checkpoint_eval"] = {
            "source": eval_source,
            "prompts": len(prompts),
            "temperature": 0.0,
            "max_new_tokens": eval_max_new_tokens(ctx),
        }
    scores = ", ".join(f"{r['step']}: {_pct(r[key])}" for r in rows)
    ctx.console.print(f"  checkpoints ({key}) {scores}; chose step {best['step']}")
    if best[key] is None:
        why = "fewer than 10 pairs, none held out" if key == "pairwise_accuracy" else no_validation_reason(prompts)
        ctx.console.print(f"  [yellow]no checkpoint could be scored ({why}): kept the last one[/yellow]")
    metrics["doctor"] = run_doctor(ctx, metrics)
    return StageResult(
        metrics=metrics,
        outputs={"model": ctx.dir / "model"},
        summary=f"{result['steps']} steps; checkpoint {best['step']} chosen, {key} {_pct(best[key])}",
    )


def run_doctor(ctx: StageContext, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The doctor's findings on this stage's own history (:mod:`pipelines.doctor`), warnings printed."""
    from pipelines.doctor import diagnose_stage

    try:
        findings = diagnose_stage(metrics, ctx.dir)
    except InputError as exc:  # advice only: a history the doctor cannot read never fails the stage
        ctx.console.print(f"  [dim]doctor: {exc}[/dim]")
        return []
    for f in findings:
        if f["severity"] != "info":
            ctx.console.print(f"  [yellow]doctor: {f['title']}: {f['evidence']['summary']}; fix: {f['fix']}[/yellow]")
    return findings


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
