"""The plan file (``plan.yaml``): pydantic models, loading, and validation.

YAML becomes pydantic once, at the boundary; everything after works on typed
values. Unknown keys are rejected, and every problem is reported at once as
``field.path: reason`` (``stages[2].samples: must be >= 1``).

Parse a plan (schema only; ``advisor.validate`` checks everything else)::

    plan = parse_plan(load_plan_data(Path("plan.yaml")))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from advisor.errors import PlanError
from advisor.flowchart import PROBE_GATE
from pipelines.stages import STAGE_KINDS

TASK_KINDS = ("math", "code", "structured", "classification", "open_ended", "game24")
ROUTES = ("sft", "rft", "rlhf")
BACKENDS = ("hf", "vllm", "openai")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Task(Strict):
    kind: Literal["math", "code", "structured", "classification", "open_ended", "game24"]
    description: str = ""


def _cot_word(value: Any) -> Any:
    """YAML reads a bare yes/no as a boolean; cot_helps means the word."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


CotHelps = Annotated[Literal["yes", "no", "unknown"] | None, BeforeValidator(_cot_word)]


class Answers(Strict):
    """The flowchart answers recorded in the plan (what the route follows from)."""

    labeled_rows: int = Field(ge=0)
    verifiable: bool
    ground_truth: bool | None = None
    cot_helps: CotHelps = None
    preference_pairs: bool | None = None


class DecisionStep(Strict):
    question: str
    answer: Any
    because: str


class Models(Strict):
    base: str
    teacher: str | None = None
    judges: list[str] = Field(default_factory=list)
    backend: Literal["hf", "vllm", "openai"] = "hf"
    chat: bool = Field(default=True, description="wrap prompts as chat messages (the model's chat template)")
    base_url: str | None = Field(default=None, description="OpenAI-compatible server, for backend openai")
    api_key_env: str = "OPENAI_API_KEY"


class Data(Strict):
    train: str | None = None
    eval: str | None = None
    prompt_field: str = "question"
    answer_field: str = "answer"
    solution_field: str | None = Field(default="solution", description="gold worked solutions, if the data has them")
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    validation: str | None = Field(default=None, description="prompts that choose checkpoints (keeps eval unbiased)")
    general: str | None = Field(default=None, description="general prompts mixed into RL pools")
    ood_eval: str | None = Field(default=None, description="an out-of-distribution eval split")


class VerifierSpec(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class VLLMOptions(Strict):
    """``compute.vllm``: engine options for ``models.backend: vllm``. Left unset, each is chosen
    when the engine starts, for the device it finds (CPU or CUDA). The tensor parallel size
    lives in ``compute.tensor_parallel_size`` (``compute.vllm.tensor_parallel_size`` is read as it)."""

    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="GPU: share of its memory for weights + KV cache (default 0.9)"
    )
    kv_cache_gb: float | None = Field(
        default=None, gt=0, description="KV cache size in GiB; the CPU default (1) instead of a share of RAM"
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="no torch.compile or CUDA graphs: default true on CPU (starts in seconds, not minutes)",
    )
    max_model_len: int | None = Field(default=None, ge=1, description="context cap; default the model's")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    chunked_prefill: bool | None = Field(
        default=None, description="default off on CPU, where a per-request seed crashes chunked batches"
    )


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Compute(Strict):
    gpus: int = Field(default=0, ge=0)
    num_processes: int = Field(default=1, ge=1)
    distributed: Literal["ddp", "deepspeed", "fsdp"] = "ddp"
    tensor_parallel_size: int = Field(default=1, ge=1)
    generation_batch_size: int = Field(default=16, ge=1)
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch threads per computing process and verification workers; "
        "default: OMP_NUM_THREADS if set, else the available cores divided by num_processes",
    )
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)

    def threads_per_process(self) -> int:
        """Threads each computing process may use without oversubscribing the machine.

        ``threads`` when the plan sets it; else ``OMP_NUM_THREADS`` when the environment
        sets it (the user said so); else the cores this process may run on, shared by
        the ``num_processes`` that compute at once. Never below 1.
        """
        if self.threads is not None:
            return self.threads
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        return max(1, available_cores() // self.num_processes)

    @model_validator(mode="before")
    @classmethod
    def _one_tensor_parallel_size(cls, data: Any) -> Any:
        """Move ``compute.vllm.tensor_parallel_size`` to ``compute.tensor_parallel_size``: one value, one place."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("vllm"), dict)
            or "tensor_parallel_size" not in data["vllm"]
        ):
            return data
        vllm = dict(data["vllm"])
        size = vllm.pop("tensor_parallel_size")
        if data.get("tensor_parallel_size", size) != size:
            raise ValueError(
                f"tensor_parallel_size is {data['tensor_parallel_size']} but vllm.tensor_parallel_size is {size}: set one"
            )
        return {**data, "vllm": vllm, "tensor_parallel_size": size}


# ---- stages: a union tagged by ``kind``; each carries its own validated options ----


class StageBase(Strict):
    enabled: bool = True
    why: dict[str, str] = Field(default_factory=dict, description="knob -> one-line rationale")


class Sampling(StageBase):
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int = Field(default=512, ge=1)
    seed: int = 0
    shard_size: int = Field(default=64, ge=1, description="prompts per resumable shard")
    prompt_template: str | None = Field(default=None, description="inline jinja2 prompt; default: templates/prompts")


class ProbeStage(Sampling):
    kind: Literal["probe"] = "probe"
    gate: float = Field(default=PROBE_GATE, ge=0, le=1)
    samples: int = Field(default=8, ge=1)
    limit: int | None = Field(default=None, ge=1)
    prompt_style: Literal["direct", "cot", "compare"] = "cot"


class SynthesizeStage(Sampling):
    kind: Literal["synthesize"] = "synthesize"
    samples: int = Field(default=4, ge=1, description="teacher candidates per prompt")
    aggregation: Literal["majority", "unanimous", "mean_score"] = "majority"
    threshold: float = Field(default=7.0, ge=0, le=10)
    require_verifier: bool = True
    rubric: str | None = None
    judge_max_new_tokens: int = Field(default=256, ge=1, description="room for the judge's JSON label")
    judge_mode: Literal["label", "solve"] = Field(
        default="label",
        description="label: judges grade with the rubric; solve: judges answer themselves and vote on agreement",
    )
    new_prompts: int = Field(default=0, ge=0)


class RejectionSampleStage(Sampling):
    kind: Literal["rejection_sample"] = "rejection_sample"
    samples: int = Field(default=16, ge=1)
    max_per_prompt: int = Field(default=10, ge=1)
    limit: int | None = Field(default=None, ge=1, description="a seeded sample of this many training prompts")
    dedupe: bool = True
    keep: Literal["verified", "all"] = Field(
        default="verified",
        description="all: keep unverified samples too (a control run that shows what the verifier buys)",
    )


class TrainBase(StageBase):
    lr: float = Field(gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, ge=-1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    lr_scheduler: str = "cosine"
    max_grad_norm: float = Field(default=1.0, gt=0)
    lora: Literal["auto", "yes", "no"] = "auto"
    seed: int = 0


class SftStage(TrainBase):
    kind: Literal["sft"] = "sft"
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.25, ge=0)


class PsftStage(TrainBase):
    kind: Literal["psft"] = "psft"
    lr: float = Field(default=1e-4, gt=0)
    epsilon: float = Field(default=0.28, gt=0)
    refresh_every: int = Field(default=8, ge=1)


class DpoStage(TrainBase):
    kind: Literal["dpo"] = "dpo"
    lr: float = Field(default=1e-6, gt=0)
    beta: float = Field(default=0.1, gt=0)
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"])


class GrpoStage(TrainBase):
    kind: Literal["grpo"] = "grpo"
    lr: float = Field(default=1e-6, gt=0)
    beta: float = Field(default=0.0, ge=0)
    epsilon: float = Field(default=0.2, gt=0)
    epsilon_high: float | None = Field(default=0.28, gt=0)
    loss_type: str = "dapo"
    num_generations: int = Field(default=8, ge=2)
    max_new_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    general_mix: float = Field(default=0.05, ge=0, lt=1)
    reward: Literal["verifier", "reward_model"] = "verifier"
    reward_shuffle: bool = Field(
        default=False,
        description="control run: shuffle the rewards within each group, so the update carries no real signal",
    )


class RlooStage(GrpoStage):
    kind: Literal["rloo"] = "rloo"  # type: ignore[assignment]


class RewardModelStage(TrainBase):
    kind: Literal["reward_model"] = "reward_model"
    lr: float = Field(default=1e-5, gt=0)


class EvaluateStage(StageBase):
    kind: Literal["evaluate"] = "evaluate"


Stage = Annotated[
    ProbeStage
    | SynthesizeStage
    | RejectionSampleStage
    | SftStage
    | PsftStage
    | DpoStage
    | GrpoStage
    | RlooStage
    | RewardModelStage
    | EvaluateStage,
    Field(discriminator="kind"),
]


class Plan(Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    task: Task
    answers: Answers
    route: Literal["sft", "rft", "rlhf"]
    provisional: bool = False
    decision: list[DecisionStep] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    models: Models
    data: Data = Field(default_factory=Data)
    verifier: VerifierSpec
    compute: Compute = Field(default_factory=Compute)
    stages: list[Stage] = Field(min_length=1)

    def stage_dirs(self) -> list[str]:
        """Run-directory names, ``NN-kind``, numbered over all stages (disabled ones too)."""
        return [f"{i:02d}-{s.kind}" for i, s in enumerate(self.stages, start=1)]


# ---- errors as one line each ----


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    parts = list(loc)
    i = 0
    while i < len(parts):
        p = parts[i]
        if isinstance(p, int):
            out += f"[{p}]"
            # pydantic puts the union tag after the index; it is noise to a reader
            if i + 1 < len(parts) and parts[i + 1] in STAGE_KINDS:
                i += 1
        else:
            out += ("." if out else "") + str(p)
        i += 1
    return out or "(top level)"


def _msg(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sym = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {sym} {bound} (got {err.get('input')!r})"
    if kind == "union_tag_invalid":
        return f"unknown stage kind {ctx.get('tag')!r}; expected one of {', '.join(STAGE_KINDS)}"
    if kind == "union_tag_not_found":
        return "missing 'kind'"
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {err.get('input')!r})" if "input" in err else err["msg"]


def format_validation_error(exc: ValidationError) -> list[str]:
    return [f"{_loc(e['loc'])}: {_msg(e)}" for e in exc.errors()]


def parse_plan(data: dict[str, Any]) -> tuple[Plan | None, list[str]]:
    """The plan from YAML data, or every schema problem as ``field.path: reason``."""
    try:
        return Plan.model_validate(data), []
    except ValidationError as exc:
        return None, format_validation_error(exc)


def load_plan_data(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PlanError(f"{path}: file not found") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise PlanError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan must be a YAML mapping, got {type(data).__name__}")
    return data


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """Plain data for YAML; each stage reads ``kind`` first and ``why`` last."""
    data = plan.model_dump(mode="json")
    data["stages"] = [
        {"kind": s["kind"], **{k: v for k, v in s.items() if k not in ("kind", "why")}, "why": s["why"]}
        for s in data["stages"]
    ]
    return data


def dump_plan(plan: Plan) -> str:
    return yaml.safe_dump(plan_to_dict(plan), sort_keys=False, allow_unicode=True, width=100)
