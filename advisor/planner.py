"""From questionnaire answers to a plan: the route, its stages, and why.

The flowchart (``advisor.flowchart``) picks the route; this module turns the
route into stages with the defaults of KNOWLEDGE.md sections 2 and 4, each knob
carrying a one-line rationale so a user can disagree knowingly.

>>> plan = build_plan(PlanAnswers(labeled_rows=250, verifiable=True, cot_helps="yes"))
>>> plan.route, [s.kind for s in plan.stages]
('rft', ['probe', 'synthesize', 'rejection_sample', 'sft', 'grpo', 'evaluate'])
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from advisor.flowchart import ENOUGH_GOLD_ROWS, PROBE_GATE, walk
from advisor.plan import (
    Answers,
    Compute,
    CotHelps,
    Data,
    DecisionStep,
    DpoStage,
    EvaluateStage,
    GrpoStage,
    Models,
    Plan,
    ProbeStage,
    RejectionSampleStage,
    RewardModelStage,
    SftStage,
    Strict,
    SynthesizeStage,
    Task,
    VerifierSpec,
)

#: The verifier each task kind gets unless the user names another.
DEFAULT_VERIFIER = {
    "math": "math",
    "code": "code",
    "structured": "json",
    "classification": "exact",
    "open_ended": "judge",
    "game24": "game24",
}
#: Whether code or rules can usually judge this kind of task (the interactive default).
USUALLY_VERIFIABLE = {k: k != "open_ended" for k in DEFAULT_VERIFIER}
#: A judge's pass mark on its 0-10 scale: 7 is "good", as the synthesize rubric reads it.
JUDGE_THRESHOLD = 7.0


def verifier_spec(answers: PlanAnswers, name: str) -> VerifierSpec:
    """The plan's verifier; a judge records its models (``models.judges``: a panel) and its scale."""
    if name != "judge":
        return VerifierSpec(name=name)
    options: dict[str, Any] = {"model": list(answers.judge_models), "mode": "pointwise", "scale": 10.0}
    options["threshold"] = JUDGE_THRESHOLD
    return VerifierSpec(name=name, options=options)


DEFAULT_BASE = "Qwen/Qwen2.5-1.5B-Instruct"
DEFAULT_TEACHER = "Qwen/Qwen2.5-7B-Instruct"
#: Three judges from different families vote better than one large judge (PoLL, Verga et al. 2024).
DEFAULT_JUDGES = [
    "Qwen/Qwen2.5-7B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
]


class PlanAnswers(Strict):
    """Everything the questionnaire collects. Only the flowchart answers lack defaults."""

    labeled_rows: int = Field(ge=0)
    verifiable: bool
    cot_helps: CotHelps = None
    preference_pairs: bool = False
    task_kind: Literal["math", "code", "structured", "classification", "open_ended", "game24"] = "math"
    description: str = ""
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    base_model: str = DEFAULT_BASE
    teacher_model: str = DEFAULT_TEACHER
    judge_models: list[str] = Field(default_factory=lambda: list(DEFAULT_JUDGES))
    backend: Literal["hf", "vllm", "openai"] | None = None
    base_url: str | None = None
    train_data: str = "data/train.jsonl"
    eval_data: str = "data/eval.jsonl"
    prompt_field: str = "question"
    answer_field: str = "answer"
    verifier: str | None = None
    gpus: int = Field(default=0, ge=0)

    @field_validator("judge_models", mode="before")
    @classmethod
    def _judges(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [j.strip() for j in v.split(",") if j.strip()]
        return v

    @model_validator(mode="after")
    def _cot_needed(self) -> PlanAnswers:
        path = walk(self.flow())
        if path.missing:
            raise ValueError(f"{path.missing} is required for {self.labeled_rows} labeled rows")
        return self

    def flow(self) -> dict[str, Any]:
        return {
            "labeled_rows": self.labeled_rows,
            "verifiable": self.verifiable,
            "cot_helps": self.cot_helps,
            "preference_pairs": self.preference_pairs,
        }


def _probe(route: str, provisional: bool) -> ProbeStage:
    style = "compare" if provisional else ("cot" if route == "rft" else "direct")
    return ProbeStage(
        gate=PROBE_GATE,
        samples=8,
        prompt_style=style,
        why={
            "gate": "fine-tuning has a real chance only if at least ~20% of prompted answers are already right",
            "samples": "8 samples per prompt give pass@1..8; at p=0.2, G=8 about 17% of groups carry no GRPO signal",
            "prompt_style": {
                "compare": "cot_helps is unknown: probe direct and chain-of-thought prompts and let the gap decide",
                "cot": "RFT trains on reasoning paths, so probe with a chain-of-thought prompt",
                "direct": "reasoning does not help this task, so probe with a direct prompt",
            }[style],
        },
    )


def _sft(rows: int) -> SftStage:
    return SftStage(
        lr=1e-4,
        weight_decay=0.25,
        epochs=2.0 if rows < 10_000 else 1.0,
        why={
            "lr": "LoRA starting point 1e-4, sweep down (full fine-tuning of large models: 1e-6 to 1e-5, cosine + warmup)",
            "weight_decay": "practitioners' LoRA starting point 0.25, sweep down",
            "lora": "auto: LoRA above the size threshold, full fine-tuning for tiny models",
            "checkpoint": "checkpoints are chosen by eval pass rate, not loss: loss can fall while quality falls",
        },
    )


def _grpo(sft_lr: float | None, reward: str) -> GrpoStage:
    after_sft = sft_lr is not None
    return GrpoStage(
        enabled=reward == "reward_model",
        lr=(sft_lr / 10) if after_sft else 1e-6,
        beta=0.001 if after_sft else 0.0,
        reward=reward,
        why={
            "enabled": "RL with rule rewards is the stronger continuation once SFT puts the model in range; "
            "enable it after evaluate shows the gain"
            if reward == "verifier"
            else "online RL against the trained reward model (TRL 1.x has no PPOTrainer)",
            "lr": "one order of magnitude below SFT: high lr causes mode collapse",
            "beta": "KL 0.001 keeps outputs near the SFT model; raise it if KL explodes"
            if after_sft
            else "no KL needed when starting from a model without SFT: its samples are already diverse",
            "epsilon_high": "clip-higher (DAPO 0.28) against entropy collapse",
            "general_mix": "mix 5-10% general prompts into the RL pool to anchor general ability",
            "max_grad_norm": "lower to 0.2 if the loss spikes",
        },
    )


def build_stages(answers: PlanAnswers, route: str, final: tuple[str, ...], provisional: bool) -> list[Any]:
    stages: list[Any] = [_probe(route, provisional)]
    if route == "rft":
        if answers.labeled_rows < ENOUGH_GOLD_ROWS:
            stages.append(
                SynthesizeStage(
                    why={
                        "samples": "the teacher writes several candidates; the judge panel keeps only agreed ones",
                        "require_verifier": "a verifiable task never keeps a pair its verifier rejects",
                        "_": f"gold solutions are scarce (under {ENOUGH_GOLD_ROWS} rows): a stronger teacher writes them",
                    }
                )
            )
        stages.append(
            RejectionSampleStage(
                samples=16,
                max_per_prompt=10,
                why={
                    "samples": "16 samples per prompt find correct paths even at modest pass rates",
                    "max_per_prompt": "cap of 10 distinct correct paths per prompt, as in ReST-EM",
                    "dedupe": "gains track the number of distinct correct paths (Yuan et al. 2023)",
                },
            )
        )
        sft = _sft(answers.labeled_rows)
        stages += [sft, _grpo(sft.lr, "verifier")]
    elif route == "sft":
        stages.append(_sft(answers.labeled_rows))
    elif "dpo" in final:
        stages.append(
            DpoStage(
                lr=1e-6,
                beta=0.1,
                loss_type=["sigmoid", "sft"],
                why={
                    "lr": "DPO wants 1e-7 to 5e-6",
                    "beta": "lower beta if the chosen/rejected margin grows slowly; raise it if outputs get worse than SFT",
                    "loss_type": "an SFT term on chosen answers keeps plain DPO from collapsing",
                },
            )
        )
    else:
        stages.append(
            RejectionSampleStage(
                samples=4,
                max_per_prompt=1,
                why={
                    "_": "no preference pairs: the judge grades the base model's own replies, and a preferred and a "
                    "rejected reply per prompt become the reward model's pairs",
                    "samples": "4 replies per prompt give each prompt a good chance of one pass and one fail",
                },
            )
        )
        stages.append(
            RewardModelStage(why={"lr": "reward models train like SFT, at a conservative 1e-5"}),
        )
        stages.append(_grpo(None, "reward_model"))
    stages.append(EvaluateStage(why={"_": "re-probe with the probe's exact settings: a measured pass-rate change"}))
    return stages


def build_plan(answers: PlanAnswers) -> Plan:
    """Walk the flowchart with ``answers`` and lay out the stages of the chosen route."""
    path = walk(answers.flow())
    outcome = path.outcome
    assert outcome is not None  # PlanAnswers guarantees a complete walk
    warnings: list[str] = []
    verifier = answers.verifier or DEFAULT_VERIFIER[answers.task_kind]
    if outcome.route == "rft" and not answers.verifiable:
        warnings.append(
            f"RFT on a task code or rules cannot judge: its verifier ({verifier}) is a judge model or a "
            "reference match, which is weaker; consider making answers checkable"
        )
    if outcome.provisional:
        warnings.append(
            "provisional route: the probe compares direct and chain-of-thought prompting and may switch to sft"
        )
    backend = answers.backend or ("vllm" if answers.gpus > 0 else "hf")
    decision = [DecisionStep(question=s.question, answer=s.answer, because=s.because) for s in path.steps]
    return Plan(
        name=answers.name or f"{answers.task_kind.replace('_', '-')}-{outcome.route}",
        task=Task(kind=answers.task_kind, description=answers.description),
        answers=Answers(
            labeled_rows=answers.labeled_rows,
            verifiable=answers.verifiable,
            ground_truth=answers.labeled_rows > 0 or answers.verifiable,
            cot_helps=answers.cot_helps,
            preference_pairs=answers.preference_pairs if outcome.route == "rlhf" else None,
        ),
        route=outcome.route,
        provisional=outcome.provisional,
        decision=decision,
        warnings=warnings,
        models=Models(
            base=answers.base_model,
            teacher=answers.teacher_model,
            judges=answers.judge_models,
            backend=backend,
            base_url=answers.base_url,
        ),
        data=Data(
            train=answers.train_data,
            eval=answers.eval_data,
            prompt_field=answers.prompt_field,
            answer_field=answers.answer_field,
        ),
        verifier=verifier_spec(answers, verifier),
        compute=Compute(gpus=answers.gpus, num_processes=max(1, answers.gpus)),
        stages=build_stages(answers, outcome.route, outcome.final, outcome.provisional),
    )


# ---- rendering the plan's files ----


def _stage_summary(stage: Any) -> str:
    from pipelines.stages import STAGES

    return ", ".join(f"{k}={getattr(stage, k)}" for k in STAGES[stage.kind].knobs)


def explanation_lines(plan: Plan) -> list[tuple[str, str | None]]:
    """``advisor explain`` as lines of text, each with a style (``title``, ``warning`` or None)."""
    from advisor.render import answer_text

    info = explain(plan)
    flag = " (provisional)" if plan.provisional else ""
    lines: list[tuple[str, str | None]] = [(f"route: {plan.route}{flag}", "title")]
    lines.append((f"  {info['outcome'].summary}", None))
    lines.append(("path:", None))
    lines += [(f"  {s.question} = {answer_text(s.answer)}: {s.because}", None) for s in info["path"].steps]
    lines.append(("what would change it:", None))
    lines += [(f"  - {alt}", None) for alt in info["alternatives"]]
    lines += [(f"warning: {w}", "warning") for w in plan.warnings]
    lines.append(("stages:", None))
    for i, stage in enumerate(plan.stages, start=1):
        off = "" if stage.enabled else " (off)"
        lines.append((f"  {i}. {stage.kind}{off}  {_stage_summary(stage)}", None))
    return lines


def print_explanation(plan: Plan) -> None:
    """Print :func:`explanation_lines` to stdout, titles bold and warnings yellow."""
    import click

    for text, style in explanation_lines(plan):
        click.secho(text, bold=style == "title", fg="yellow" if style == "warning" else None)


def explain(plan: Plan) -> dict[str, Any]:
    """The path, the route and the alternatives of a plan, ready to print or render."""
    from advisor.flowchart import OUTCOMES, alternatives, describe_alternative

    answers = plan.answers.model_dump()
    path = walk(answers)
    outcome = path.outcome or OUTCOMES[plan.route]
    return {
        "path": path,
        "outcome": outcome,
        "alternatives": [describe_alternative(a) for a in alternatives(answers)],
    }


def render_plan_files(plan: Plan, plan_file: str = "plan.yaml") -> dict[str, str]:
    """``plan.yaml``, ``README.md`` and ``run.sh`` for a plan, from the jinja2 templates."""
    from advisor.flowchart import mermaid
    from advisor.plan import plan_to_dict
    from advisor.render import render

    info = explain(plan)
    data = plan_to_dict(plan)
    stages = data.pop("stages")
    context = {
        "plan": plan,
        "plan_file": plan_file,
        "outcome": info["outcome"],
        "alternatives": info["alternatives"],
    }
    stage_rows = [{"kind": s.kind, "enabled": s.enabled, "summary": _stage_summary(s)} for s in plan.stages]
    gate = next((s.gate for s in plan.stages if s.kind == "probe"), PROBE_GATE)
    return {
        "plan.yaml": render("plan.yaml.j2", head=data, stages=stages, **context),
        "README.md": render("README.md.j2", stages=stage_rows, diagram=mermaid(info["path"]), gate=gate, **context),
        "run.sh": render("run.sh.j2", **context),
    }
