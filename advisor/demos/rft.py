"""``advisor demo`` (route ``rft``, the default): the whole pipeline, offline, on a CPU, with a measured gain.

What it does, in order:

1. **Models.** Trains small character-level models from scratch on 2-digit
   addition (seeded, so the run is reproducible), or loads them from the cache:
   a *student* stopped as soon as its sampled accuracy enters the 20-50% band, a
   stronger *teacher*, and a second *judge* (the student trained further on another
   seed). Nothing is downloaded.
2. **Plan.** Answers the questionnaire without a terminal (200 labeled rows,
   verifiable, reasoning helps), so the flowchart picks RFT, and prints the path.
3. **Pipeline.** ``advisor run`` on that plan: probe (the gate passes), synthesize
   (the teacher writes answers; two judges, which vote by solving each question
   themselves, and the math verifier label them),
   rejection sampling on the student and SFT, for several rounds, then evaluate
   on held-out prompts. ``report.html`` shows it all.
4. **Control.** The same loop, but training on *unverified* samples, to show
   what the verifier buys.

``advisor demo --gate-fail`` uses a barely trained student instead: the probe
measures it under 20% and the run stops with exit 1 and the verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.demos.common import decision_path, figure_line, finish, headline, run_and_read
from advisor.planner import print_explanation
from pipelines.artifacts import sha256_json, write_text


@dataclass(frozen=True)
class DemoConfig:
    """The demo's sizes. Each knob trades minutes for a clearer result on 2 cores."""

    seed: int = 0
    pretrain_rows: int = 3000  # addition problems the models learn from
    train_prompts: int = 350  # labeled prompts: under 400, so gold solutions are scarce and a teacher writes them
    eval_prompts: int = 100  # held-out prompts for probe and evaluate
    validation_prompts: int = 64  # held-out prompts that choose checkpoints (never the eval ones)
    student_band: tuple[float, float] = (0.25, 0.45)  # stop training the student inside this band
    student_max_steps: int = 900
    weak_student_steps: int = 60  # --gate-fail: far below the 20% gate
    teacher_steps: int = 600  # on top of the student's training
    judge_steps: int = 600
    samples: int = 8  # samples per prompt (probe, rejection sampling)
    rounds: int = 3  # rejection sampling + SFT rounds
    sft_steps: int = 200  # per round; checkpoints at 25/50/75/100% are scored on validation prompts
    sft_lr: float = 5e-4


def _pairs(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(r["prompt"], r["answer"]) for r in rows]


def make_data(cfg: DemoConfig) -> dict[str, list[dict[str, str]]]:
    """Disjoint pre-training, pipeline-training and held-out eval problems."""
    from pipelines.testing.tinymodel import addition_task

    sizes = {"eval": cfg.eval_prompts, "validation": cfg.validation_prompts, "train": cfg.train_prompts}
    pool = addition_task(cfg.pretrain_rows + 3 * sum(sizes.values()), seed=cfg.seed)
    seen: set[str] = set()
    unique = [r for r in pool if not (r["prompt"] in seen or seen.add(r["prompt"]))]
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = unique[start : start + size]
        start += size
    splits["pretrain"] = unique[start : start + cfg.pretrain_rows]
    return splits


def build_models(
    cache: Path, cfg: DemoConfig, data: dict[str, list[dict[str, str]]], console: Any, names: tuple[str, ...] = ()
) -> dict[str, Path]:
    """Train (or load from ``cache``) the student, weak student, teacher and judge (or just ``names``)."""
    from pipelines.sampling import quiet_libraries
    from pipelines.testing.tinymodel import train_char_model

    quiet_libraries()
    key = sha256_json(asdict(cfg))[:12]
    root = cache / key
    pretrain = _pairs(data["pretrain"])
    check = _pairs(data["train"][:100])
    lo, _ = cfg.student_band
    specs = {
        "student": dict(steps=cfg.student_max_steps, eval_examples=check, eval_every=25, target_accuracy=lo),
        "weak-student": dict(steps=cfg.weak_student_steps),
        # the teacher continues from the student: same tokenizer, much stronger
        "teacher": dict(steps=cfg.teacher_steps, init_from="student"),
        # a second judge: the student trained further on another seed, so its errors are its own
        "judge": dict(steps=cfg.judge_steps, init_from="student", seed=cfg.seed + 1),
    }
    paths = {}
    for name, spec in specs.items():
        path = root / name
        paths[name] = path
        if names and name not in names:
            continue
        if (path / "config.json").exists():
            console.print(f"  {name}: cached ({path})")
            continue
        spec = dict(spec)
        examples = spec.pop("examples", pretrain)
        if "init_from" in spec:
            spec["init_from"] = paths[spec["init_from"]]
        with console.status(f"training {name} from scratch ({spec['steps']} steps at most)"):
            spec.setdefault("seed", cfg.seed)
            result = train_char_model(path, examples, log_every=10_000, **spec)
        console.print(
            f"  {name}: {result.parameters / 1e6:.2f}M parameters, {result.steps} steps, {result.seconds:.0f}s"
        )
    return paths


def write_inputs(out: Path, data: dict[str, list[dict[str, str]]]) -> None:
    for split in ("train", "validation", "eval"):
        lines = [json.dumps({"question": r["prompt"], "answer": r["answer"]}) for r in data[split]]
        write_text(out / "data" / f"{split}.jsonl", "\n".join(lines) + "\n")


def demo_plan(models: dict[str, Path], cfg: DemoConfig, student: str, control: bool = False) -> dict[str, Any]:
    """The plan the flowchart writes for the demo's answers, sized for a CPU."""
    from advisor.plan import plan_to_dict
    from advisor.planner import PlanAnswers, build_plan

    answers = PlanAnswers(
        name="demo-control" if control else "demo",
        description="2-digit addition with a character-level model trained from scratch",
        labeled_rows=cfg.train_prompts,
        verifiable=True,
        cot_helps="yes",
        task_kind="math",
        base_model=str(models[student]),
        teacher_model=str(models["teacher"]),
        judge_models=[str(models["teacher"]), str(models["judge"])],
        train_data="data/train.jsonl",
        eval_data="data/eval.jsonl",
    )
    plan = plan_to_dict(build_plan(answers))
    plan["models"]["chat"] = False  # character models have no chat template
    plan["data"]["validation"] = "data/validation.jsonl"
    plan["verifier"]["options"] = {"fallback_last_number": True}
    sampling = {"prompt_template": "{{ question }}", "max_new_tokens": 5, "shard_size": 50, "temperature": 1.0}
    by_kind = {s["kind"]: s for s in plan["stages"]}
    by_kind["probe"].update(sampling, samples=cfg.samples)
    # character models cannot follow a rubric, so the judges vote by solving each question themselves
    by_kind["synthesize"].update(sampling, samples=2, judge_mode="solve", require_verifier=True)
    by_kind["rejection_sample"].update(sampling, samples=cfg.samples, max_per_prompt=4)
    by_kind["sft"].update(lr=cfg.sft_lr, max_steps=cfg.sft_steps, batch_size=64, lora="no", weight_decay=0.0)
    loop = [by_kind["rejection_sample"], by_kind["sft"]]
    if control:
        loop[0] = {**loop[0], "keep": "all", "dedupe": False}
    stages = [by_kind["probe"]] + ([] if control else [by_kind["synthesize"]])
    for _ in range(cfg.rounds):
        stages += [dict(s) for s in loop]
    stages.append(by_kind["evaluate"])
    plan["stages"] = stages
    return plan


def run_demo(
    out: Path, cache: Path | None = None, gate_fail: bool = False, console: Any = None, cfg: DemoConfig | None = None
) -> dict[str, Any]:
    """Build, plan, run and compare. Raises GateStop (exit 1) with ``gate_fail``."""
    from rich.console import Console

    from advisor.plan import Plan

    console = console or Console(stderr=True)
    cfg = cfg or DemoConfig()
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or out / "models"
    console.rule("1. models (trained from scratch, offline)")
    data = make_data(cfg)
    # --gate-fail needs only the weak student: the probe stops the run before any other model is used
    models = build_models(cache, cfg, data, console, names=("weak-student",) if gate_fail else ())
    if gate_fail:
        models = {name: models["weak-student"] for name in models}
    write_inputs(out, data)

    console.rule("2. plan (the flowchart, answered without a terminal)")
    plan_data = demo_plan(models, cfg, "weak-student" if gate_fail else "student")
    print_explanation(Plan.model_validate(plan_data))

    console.rule("3. pipeline")
    result = run_and_read(plan_data, out / "plan.yaml", out / "runs" / "demo", console)

    console.rule("4. control: the same loop on unverified samples")
    control_data = demo_plan(models, cfg, "student", control=True)
    control = run_and_read(control_data, out / "plan-control.yaml", out / "runs" / "demo-control", console)

    summary = {
        "route": "rft",
        **headline(result),
        "control": {"label": "the same loop on unverified samples", **headline(control)},
        "seed": cfg.seed,
        "path": decision_path(plan_data),
        "run_report": str(out / "runs" / "demo" / "report.html"),
    }
    return finish(out, summary, describe(summary))


def describe(summary: dict[str, Any]) -> list[str]:
    """The demo's figures as printed lines."""
    return [
        figure_line("verified RFT", summary),
        figure_line("control (unverified samples)", summary["control"]),
    ]
