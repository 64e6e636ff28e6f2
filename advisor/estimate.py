"""``advisor estimate``: what a plan costs before it runs: tokens, FLOPs, memory, time.

For each enabled stage it counts the tokens generated and trained, from the plan's sample
counts, ``max_new_tokens`` and batch sizes, the data files' row counts and prompt lengths
when the files exist (else the assumptions it prints), and then prices them:

- **FLOPs**: about 2·N per generated or scored token (a forward pass) and 6·N per trained
  token (forward and backward), N the model's parameters (:mod:`advisor.model_size`).
  A reference model (DPO; GRPO/RLOO with ``beta > 0``) adds a forward pass.
- **Peak memory**: weights; for training also gradients and AdamW's two moments
  (16 bytes a trained parameter: all of them in full fine-tuning, the adapter's under
  LoRA); activations at the plan's batch and sequence length; the KV cache when sampling.
- **Time** on the plan's ``compute``: on this CPU (no ``gpus``) from constants measured
  here (:mod:`advisor.costs`; ``benchmarks/estimate.md``: fitted on some runs, checked on others); on GPUs
  from a small table of peak throughput and memory bandwidth at a stated utilisation.

Time is a sum of what a stage does, each at a measured rate: loading models, decoding
steps (each costs a fixed overhead plus its weight reads and FLOPs), optimizer steps
(overhead plus FLOPs), and saving checkpoints. Generation is assumed to run to
``max_new_tokens`` (an upper bound: answers that stop early cost less).

Usage::

    estimate = estimate_plan(plan, plan_dir)
    for line in describe(estimate): print(line)
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.costs import (
    CPU_START_SECONDS,
    DEFAULT_GPU,
    GPUS,
    Machine,
    StageEstimate,
    generation,
    load,
    training,
)
from advisor.model_size import ModelShape, model_shape
from advisor.plan import Plan

# ---- assumptions where the plan and its files do not say ----

ASSUMED_ROWS = 200  # a data file that does not exist yet
ASSUMED_PROMPT_TOKENS = 64
ASSUMED_ANSWER_TOKENS = 64
ASSUMED_PASS_RATE = 0.3  # share of rejection samples that pass (the probe's band)
CHARS_PER_TOKEN = 4.0  # a subword tokenizer; character-level models use 1
CHAT_TEMPLATE_TOKENS = 30  # a chat template's default system prompt and role tags (SmolLM2's, Qwen2.5's)
#: Warn when a plan takes longer than this.
REASONABLE_SECONDS = 24 * 3600


@dataclass
class Estimate:
    stages: list[StageEstimate]
    device: str  # "cpu (N threads)" or "4 x a100-80gb"
    memory_limit: int
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> dict[str, Any]:
        seconds = sum(s.seconds for s in self.stages)
        gpus = 0 if self.device.startswith("cpu") else int(self.device.split(" x ")[0])
        return {
            "seconds": round(seconds, 1),
            "hours": round(seconds / 3600, 3),
            "gpu_hours": round(seconds * gpus / 3600, 3),
            "flops": float(f"{sum(s.flops for s in self.stages):.4g}"),
            "generated_tokens": sum(s.generated_tokens for s in self.stages),
            "trained_tokens": sum(s.trained_tokens for s in self.stages),
            "peak_memory_bytes": max((s.peak_memory_bytes for s in self.stages), default=0),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "memory_limit_bytes": self.memory_limit,
            "stages": [s.to_dict() for s in self.stages],
            "total": self.total,
            "warnings": self.warnings,
        }


# ---- data: rows and lengths ----


@dataclass
class DataFacts:
    rows: int
    prompt_chars: float
    answer_chars: float
    assumed: bool


def data_facts(plan: Plan, plan_dir: Path, key: str) -> DataFacts:
    """Rows and mean prompt/answer lengths of ``data.<key>`` (the probe reads data.eval or data.train).

    ``train`` and ``validation`` are the rows the stages see: :func:`pipelines.data.training_splits`
    holds validation prompts out of ``data.train`` when the plan names no ``data.validation``.
    """
    from pipelines.data import read_rows, training_splits

    assumed = DataFacts(
        ASSUMED_ROWS, ASSUMED_PROMPT_TOKENS * CHARS_PER_TOKEN, ASSUMED_ANSWER_TOKENS * CHARS_PER_TOKEN, True
    )
    try:
        if key in ("train", "validation") and plan.data.train:
            data = plan.data
            if data.eval and not (plan_dir / data.eval).exists():  # not written yet: split without it
                data = data.model_copy(update={"eval": None})
            splits = training_splits(data, plan_dir)
            rows = splits.train if key == "train" else splits.validation
        else:
            name = getattr(plan.data, key)
            if not name or not (plan_dir / name).exists():
                return assumed
            rows = read_rows(plan_dir / name)
    except Exception:  # a missing or unreadable file is validate's to report; the estimate assumes
        return assumed
    if not rows:
        return DataFacts(0, 0.0, 0.0, False) if key == "validation" else assumed

    def mean_len(field_name: str) -> float:
        values = [len(str(r.get(field_name, ""))) for r in rows if isinstance(r, dict) and r.get(field_name)]
        return sum(values) / len(values) if values else 0.0

    return DataFacts(len(rows), mean_len(plan.data.prompt_field), mean_len(plan.data.answer_field), False)


# ---- one estimate per stage kind ----


def _rows_for(plan: Plan, plan_dir: Path, key: str, facts: dict[str, DataFacts]) -> DataFacts:
    if key not in facts:
        facts[key] = data_facts(plan, plan_dir, key)
    return facts[key]


def _tokens(chars: float, shape: ModelShape) -> float:
    """Characters to tokens: as the model's tokenizer counted them on the plan's prompts, else one
    each for a character-level vocabulary, else CHARS_PER_TOKEN."""
    if shape.chars_per_token:
        return max(1.0, chars / shape.chars_per_token)
    return max(1.0, chars if shape.vocab < 1000 else chars / CHARS_PER_TOKEN)


def _prompt(plan: Plan, chars: float, shape: ModelShape) -> float:
    """Prompt tokens, with the chat template's system prompt and role tags when ``models.chat``."""
    if not plan.models.chat:
        return _tokens(chars, shape)
    if shape.chat_tokens is not None:
        return _tokens(chars, shape) + shape.chat_tokens
    return _tokens(chars, shape) + (CHAT_TEMPLATE_TOKENS if shape.vocab >= 1000 else 0)


def sample_texts(plan: Plan, plan_dir: Path, limit: int = 200) -> list[str]:
    """Up to ``limit`` prompts and answers from each of ``data.train`` and ``data.eval`` (the files
    that exist yet), for counting tokens."""
    from pipelines.data import read_rows

    texts: list[str] = []
    for key in ("train", "eval"):
        file = getattr(plan.data, key)
        if not file or not (plan_dir / file).exists():
            continue
        try:
            rows = read_rows(plan_dir / file)[:limit]
        except Exception:  # an unreadable file is validate's to report
            continue
        for column in (plan.data.prompt_field, plan.data.answer_field):
            texts += [str(r[column]) for r in rows if isinstance(r, dict) and r.get(column)]
    return texts


def measure_tokens(shape: ModelShape, name: str, texts: list[str], plan_dir: Path) -> ModelShape:
    """``shape`` with chars per token (on ``texts``, the plan's data) and the chat template's
    tokens measured by the model's own tokenizer, when ``name`` is a local folder with one
    (nothing is downloaded). Digits, code and other languages tokenize far from the
    4-characters rule."""
    local = Path(name) if Path(name).is_absolute() else plan_dir / name
    if not (local / "tokenizer_config.json").exists():
        return shape
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(local))
        chars_per_token = None
        if texts:
            tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
            chars_per_token = sum(map(len, texts)) / max(1, tokens)
        chat = None
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": ""}], add_generation_prompt=True)
            chat = len(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding in transformers 5
    except Exception:  # a tokenizer that will not load: the rule of thumb stands
        return shape
    return dataclasses.replace(shape, chars_per_token=chars_per_token, chat_tokens=chat)


def estimate_plan(plan: Plan, plan_dir: Path, gpu: str | None = None, memory_limit: int | None = None) -> Estimate:
    """Price every enabled stage of ``plan`` on its ``compute`` (``gpu``: a kind in :data:`GPUS`)."""
    compute = plan.compute
    kind = None if compute.gpus == 0 else GPUS[gpu or DEFAULT_GPU]
    threads = compute.threads_per_process() if hasattr(compute, "threads_per_process") else 1
    machine = Machine(kind, compute.gpus, threads, plan.models.backend)
    device = f"cpu ({threads} thread{'s' * (threads > 1)})" if kind is None else f"{compute.gpus} x {kind.name}"
    limit = memory_limit or (kind.memory if kind else _ram_bytes())
    shapes: dict[str, ModelShape | None] = {}
    warnings: list[str] = []
    texts = sample_texts(plan, plan_dir)  # read once, tokenized by each model's own tokenizer

    def shape_of(name: str) -> ModelShape | None:
        if name not in shapes:
            try:
                shapes[name] = measure_tokens(model_shape(name, plan_dir), name, texts, plan_dir)
            except Exception as exc:  # an unknown model is priced as unknown, not guessed
                shapes[name] = None
                warnings.append(str(exc).splitlines()[0])
        return shapes[name]

    facts: dict[str, DataFacts] = {}
    probe = next((s for s in plan.stages if s.kind == "probe" and s.enabled), None)
    stages = []
    policy = plan.models.base
    for stage, name in zip(plan.stages, plan.stage_dirs(), strict=True):
        if not stage.enabled:
            continue
        est = StageEstimate(name, stage.kind, policy, None)
        if not stages:  # the first stage pays for starting the libraries
            est.seconds += CPU_START_SECONDS
            est.work["start"] = 1
        _price(est, stage, plan, plan_dir, machine, shape_of, facts, probe)
        stages.append(est)
        if stage.kind in ("sft", "psft", "dpo", "grpo", "rloo"):
            policy = f"{name}/model"  # the same size as the policy it started from
            shapes[policy] = shape_of(plan.models.base)
    result = Estimate(stages, device, limit, warnings)
    result.warnings += _warnings(result, plan)
    return result


def _price(
    est: StageEstimate, stage: Any, plan: Plan, plan_dir: Path, m: Machine, shape_of: Any, facts: dict, probe: Any
) -> None:
    base = shape_of(est.model)
    batch = plan.compute.generation_batch_size
    eval_key = "eval" if plan.data.eval else "train"
    kind = stage.kind
    if base is None:
        est.assumptions.append(f"{est.model}: size unknown, not priced")
        return
    est.parameters = base.parameters
    if kind in ("probe", "evaluate"):
        sampler = probe or stage
        data = _rows_for(plan, plan_dir, eval_key, facts)
        prompts = min(data.rows, sampler.limit) if getattr(sampler, "limit", None) else data.rows
        styles = 2 if getattr(sampler, "prompt_style", "") == "compare" and kind == "probe" else 1
        new = getattr(sampler, "max_new_tokens", 512)
        generation(est, m, base, prompts * sampler.samples * styles, _prompt(plan, data.prompt_chars, base), new, batch)
        load(est, m, 1)
        if kind == "evaluate" and plan.data.ood_eval:
            ood = _rows_for(plan, plan_dir, "ood_eval", facts)
            generation(est, m, base, 2 * ood.rows * sampler.samples, _prompt(plan, ood.prompt_chars, base), new, batch)
            load(est, m, 2)
        _note(est, data, f"data.{eval_key}")
    elif kind == "rejection_sample":
        data = _rows_for(plan, plan_dir, "train", facts)
        generation(
            est, m, base, data.rows * stage.samples, _prompt(plan, data.prompt_chars, base), stage.max_new_tokens, batch
        )
        load(est, m, 1)
        _note(est, data, "data.train")
    elif kind == "synthesize":
        data = _rows_for(plan, plan_dir, "train", facts)
        teacher = shape_of(plan.models.teacher or plan.models.base)
        prompt = _prompt(plan, data.prompt_chars, base)
        if teacher is not None:
            est.model, est.parameters = plan.models.teacher or plan.models.base, teacher.parameters
            generation(est, m, teacher, data.rows * stage.samples, prompt, stage.max_new_tokens, batch)
        judge_new = stage.max_new_tokens if stage.judge_mode == "solve" else stage.judge_max_new_tokens
        for judge in plan.models.judges:
            shape = shape_of(judge)
            if shape is not None:  # solve mode: one answer per question; label mode: a label per candidate
                asked = data.rows if stage.judge_mode == "solve" else data.rows * stage.samples
                generation(
                    est,
                    m,
                    shape,
                    asked,
                    prompt + (0 if stage.judge_mode == "solve" else stage.max_new_tokens),
                    judge_new,
                    batch,
                )
        load(est, m, 1 + len(plan.models.judges))
        _note(est, data, "data.train")
    elif kind in ("sft", "psft", "dpo", "reward_model", "grpo", "rloo"):
        _price_training(est, stage, plan, plan_dir, m, base, facts, probe, batch)


def _price_training(
    est: StageEstimate,
    stage: Any,
    plan: Plan,
    plan_dir: Path,
    m: Machine,
    base: ModelShape,
    facts: dict,
    probe: Any,
    batch: int,
) -> None:
    from pipelines.stages.train import EVAL_PROMPTS, LORA_AUTO_PARAMETERS
    from pipelines.training.checkpoints import CHECKPOINTS

    data = _rows_for(plan, plan_dir, "train", facts)
    kind = stage.kind
    lora = stage.lora == "yes" or (stage.lora == "auto" and base.parameters > LORA_AUTO_PARAMETERS)
    prompt = _prompt(plan, data.prompt_chars, base)
    earlier = [s for s in plan.stages if s.enabled and s.kind == "rejection_sample"]
    if kind in ("sft", "psft") and earlier:
        rs = earlier[-1]
        rows = data.rows * min(rs.samples * ASSUMED_PASS_RATE, rs.max_per_prompt)
        answer = float(rs.max_new_tokens)
        est.assumptions.append(f"rows: {ASSUMED_PASS_RATE:.0%} of rejection samples pass (assumed)")
    else:
        rows, answer = float(data.rows), _tokens(data.answer_chars, base)
    sequences = stage.batch_size * stage.grad_accum * plan.compute.num_processes
    if kind in ("grpo", "rloo"):
        steps = (
            stage.max_steps
            if stage.max_steps > 0
            else math.ceil(rows * stage.num_generations * stage.epochs / sequences)
        )
        new = stage.max_new_tokens
        generation(est, m, base, steps * sequences, prompt, new, sequences)
        training(est, m, base, steps, sequences, prompt + new, lora, stage.beta > 0, saves(steps, CHECKPOINTS))
    else:
        pairs = 2 if kind in ("dpo", "reward_model") else 1
        steps = stage.max_steps if stage.max_steps > 0 else math.ceil(rows * stage.epochs / sequences)
        reference = kind in ("dpo", "psft")  # DPO's reference model, PSFT's old policy
        training(est, m, base, steps, sequences * pairs, prompt + answer, lora, reference, saves(steps, CHECKPOINTS))
    load(est, m, 2)
    if kind != "reward_model":  # every checkpoint is scored by greedy pass@1 on the validation prompts
        evals = min(EVAL_PROMPTS, _rows_for(plan, plan_dir, "validation", facts).rows)
        new = probe.max_new_tokens if probe is not None else getattr(stage, "max_new_tokens", 512)
        for _ in range(saves(steps, CHECKPOINTS) if evals else 0):
            generation(est, m, base, evals, prompt, new, batch)
            load(est, m, 1)
    _note(est, data, "data.train")
    if lora:
        est.assumptions.append("LoRA r=16 on every linear layer")


def saves(steps: int, checkpoints: int) -> int:
    """Checkpoints a run of ``steps`` saves: evenly spaced, whole steps apart (6 steps save 3)."""
    return max(1, min(checkpoints, steps // 2))


def _note(est: StageEstimate, data: DataFacts, label: str) -> None:
    if data.assumed:
        est.assumptions.append(
            f"{label}: file not found, {ASSUMED_ROWS} rows of {ASSUMED_PROMPT_TOKENS}-token prompts assumed"
        )


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _warnings(result: Estimate, plan: Plan) -> list[str]:
    """One line per stage that cannot fit, and for a plan that cannot finish in reasonable time."""
    out = []
    where = "RAM" if result.device.startswith("cpu") else "GPU memory"
    for s in result.stages:
        if s.peak_memory_bytes > result.memory_limit:
            out.append(
                f"{s.stage}: needs about {gib(s.peak_memory_bytes)} but {where} is {gib(result.memory_limit)} "
                f"({s.model}, {s.parameters / 1e9:.1f}B parameters): it cannot fit; {_fit_advice(s)}"
            )
    total = result.total["seconds"]
    if total > REASONABLE_SECONDS:
        slowest = max(result.stages, key=lambda s: s.seconds)
        out.append(
            f"the plan takes about {duration(total)} on {result.device}; {slowest.stage} alone {duration(slowest.seconds)}"
            + (": add gpus, or shrink samples and max_new_tokens" if result.device.startswith("cpu") else "")
        )
    return out


def _fit_advice(s: StageEstimate) -> str:
    """What to change so a stage fits: the biggest part of its memory first."""
    activations = s.work.get("activation_bytes", 0)
    if activations > s.peak_memory_bytes / 2:
        return f"lower batch_size or the sequence length (activations are about {gib(activations)})"
    if s.trained_tokens and not s.work.get("lora"):
        return "use LoRA (lora: yes) or a smaller model"
    return "use a smaller model or a GPU"


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def tokens(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def describe(result: Estimate) -> list[str]:
    """The estimate as a table, the totals, the assumptions and the warnings."""
    lines = [
        f"{'stage':22s} {'model':>9s} {'generated':>10s} {'trained':>9s} {'FLOPs':>9s} {'time':>8s} {'peak mem':>9s}"
    ]
    for s in result.stages:
        size = (
            f"{s.parameters / 1e6:.1f}M"
            if s.parameters and s.parameters < 1e9
            else f"{(s.parameters or 0) / 1e9:.1f}B"
            if s.parameters
            else "?"
        )
        lines.append(
            f"{s.stage:22s} {size:>9s} {tokens(s.generated_tokens):>10s} {tokens(s.trained_tokens):>9s} "
            f"{s.flops:>9.2e} {duration(s.seconds):>8s} {gib(s.peak_memory_bytes):>9s}"
        )
    lines += ["", total_line(result)]
    notes = sorted({a for s in result.stages for a in s.assumptions})
    lines += [f"  assumed: {a}" for a in notes]
    lines += [f"warning: {w}" for w in result.warnings]
    return lines


def total_line(result: Estimate) -> str:
    t = result.total
    hours = f"{t['gpu_hours']:.2f} GPU-hours" if t["gpu_hours"] else f"{t['hours']:.2f} CPU-hours"
    return (
        f"total on {result.device}: about {duration(t['seconds'])} ({hours}), {tokens(t['generated_tokens'])} tokens "
        f"generated, {tokens(t['trained_tokens'])} trained, {t['flops']:.2e} FLOPs, peak {gib(t['peak_memory_bytes'])}"
    )
