"""``advisor demo --route sft``: plenty of gold answers and no reasoning to learn, so SFT.

1. **Models.** The rft demo's student (a character-level model stopped in the 20-50%
   band on 2-digit addition; shared cache), nothing else.
2. **Plan.** The questionnaire is answered with 1,200 labeled rows, verifiable, and
   chain-of-thought *not* helping (a character model answers in one go), so the
   flowchart picks SFT; the path is printed.
3. **Pipeline.** probe, ``sft`` on the gold answers of ``data.train``, evaluate on 100
   held-out prompts (checkpoints chosen on a separate validation split).
4. **Control: the route the flowchart did not choose**, on the same budget: one round of
   rejection sampling on the same training prompts (the student's own verified answers,
   gold answers unused), then the same SFT steps. If RFT won, the advice would be wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.demos import rft
from advisor.demos.common import decision_path, figure_line, finish, headline, run_and_read
from advisor.planner import print_explanation
from pipelines.artifacts import write_text


@dataclass(frozen=True)
class SftDemoConfig:
    """The sft demo's sizes: the student comes from the rft demo's settings (``models``)."""

    models: rft.DemoConfig = field(default_factory=rft.DemoConfig)
    labeled_rows: int = 1200  # gold answers: 100..100k rows with no chain-of-thought gain -> SFT
    sft_steps: int = 150
    sft_lr: float = 5e-4
    batch_size: int = 64
    samples: int = 8  # probe and evaluate
    gate: float = 0.2  # the probe's gate (reduced test runs lower it: their tiny models are weaker)
    control_samples: int = 4  # rejection samples per training prompt in the rft control

    @property
    def seed(self) -> int:
        return self.models.seed


def make_data(cfg: SftDemoConfig) -> dict[str, list[dict[str, str]]]:
    """The rft demo's eval and validation splits, and fresh labeled rows disjoint from every split."""
    from pipelines.testing.tinymodel import addition_task

    data = rft.make_data(cfg.models)
    used = {r["prompt"] for rows in data.values() for r in rows}
    fresh = []
    for row in addition_task(6 * cfg.labeled_rows, seed=cfg.seed + 1000):
        if row["prompt"] not in used:
            used.add(row["prompt"])
            fresh.append(row)
    data["train"] = fresh[: cfg.labeled_rows]
    return data


def demo_plan(student: Path, cfg: SftDemoConfig, control: bool = False) -> dict[str, Any]:
    """The flowchart's plan for these answers (sft), or the rft control on the same budget."""
    from advisor.plan import plan_to_dict
    from advisor.planner import PlanAnswers, build_plan

    answers = PlanAnswers(
        name="demo-sft-control" if control else "demo-sft",
        description="2-digit addition, answered in one go, with plenty of gold answers",
        labeled_rows=cfg.labeled_rows,
        verifiable=True,
        cot_helps="yes" if control else "no",
        task_kind="math",
        base_model=str(student),
        train_data="data/train.jsonl",
        eval_data="data/eval.jsonl",
    )
    plan = plan_to_dict(build_plan(answers))
    plan["models"]["chat"] = False
    plan["data"]["validation"] = "data/validation.jsonl"
    plan["verifier"]["options"] = {"fallback_last_number": True}
    sampling = {"prompt_template": "{{ question }}", "max_new_tokens": 5, "shard_size": 100, "temperature": 1.0}
    by_kind = {s["kind"]: s for s in plan["stages"]}
    by_kind["probe"].update(sampling, samples=cfg.samples, prompt_style="direct", gate=cfg.gate)
    by_kind["sft"].update(
        lr=cfg.sft_lr, max_steps=cfg.sft_steps, batch_size=cfg.batch_size, lora="no", weight_decay=0.0, epochs=1.0
    )
    stages = [by_kind["probe"]]
    if control:
        # the route not chosen: the student's own verified answers instead of the gold ones, same SFT steps
        stages.append({**by_kind["rejection_sample"], **sampling, "samples": cfg.control_samples, "max_per_prompt": 2})
    stages += [by_kind["sft"], by_kind["evaluate"]]
    plan["stages"] = stages
    return plan


def run_demo(
    out: Path, cache: Path | None = None, console: Any = None, cfg: SftDemoConfig | None = None
) -> dict[str, Any]:
    """Build the student, plan (sft), run, then run the rft control on the same budget."""
    from rich.console import Console

    from advisor.plan import Plan

    console = console or Console(stderr=True)
    cfg = cfg or SftDemoConfig()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1. models (trained from scratch, offline)")
    data = make_data(cfg)
    models = rft.build_models(
        cache or out / "models", cfg.models, rft.make_data(cfg.models), console, names=("student",)
    )
    for split in ("train", "validation", "eval"):
        lines = [json.dumps({"question": r["prompt"], "answer": r["answer"]}) for r in data[split]]
        write_text(out / "data" / f"{split}.jsonl", "\n".join(lines) + "\n")

    console.rule("2. plan (the flowchart, answered without a terminal)")
    plan_data = demo_plan(models["student"], cfg)
    print_explanation(Plan.model_validate(plan_data))

    console.rule("3. pipeline: SFT on the gold answers")
    result = run_and_read(plan_data, out / "plan.yaml", out / "runs" / "demo-sft", console)

    console.rule("4. control: the route not chosen (rft) on the same budget")
    control_data = demo_plan(models["student"], cfg, control=True)
    control = run_and_read(control_data, out / "plan-control.yaml", out / "runs" / "demo-sft-control", console)

    summary = {
        "route": "sft",
        **headline(result),
        "control": {"label": f"rft (rejection sampling, then the same {cfg.sft_steps} SFT steps)", **headline(control)},
        "seed": cfg.seed,
        "path": decision_path(plan_data),
        "run_report": str(out / "runs" / "demo-sft" / "report.html"),
    }
    summary["advice_holds"] = summary["after"] > summary["control"]["after"]
    return finish(out, summary, describe(summary))


def describe(summary: dict[str, Any]) -> list[str]:
    """The demo's figures as printed lines."""
    verdict = "the advice holds: SFT beat RFT" if summary["advice_holds"] else "RFT did as well or better than SFT"
    return [
        figure_line("SFT on gold answers", summary),
        figure_line("control: rft, same budget", summary["control"]),
        f"{verdict} on the same SFT steps ({summary['after']:.1%} vs {summary['control']['after']:.1%})",
    ]
