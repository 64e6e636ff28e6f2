"""What the two RLHF demos share: their data, their plan, and the gain counted twice.

Both answer the questionnaire for an open-ended task with no ground truth (``labeled_rows
0``, not verifiable), so the flowchart picks RLHF; ``preference_pairs`` then chooses DPO
(``rlhf-dpo``) or a reward model and online RL (``rlhf-rm``). The plan's verifier is a
``judge``: the world's judge model (:mod:`advisor.demos.support`) with the rubric
``message|reply|`` on a 0-4 scale, passing at 3 (it undercounts by about one rule: a
lenient, imperfect judge, as real ones are). The gain is read from the probe's and
evaluate's samples twice: as the judge scored them (the pipeline's own measure) and as
the hidden rule does. The headline figures in ``demo-result.json`` are the hidden rule's;
``judge`` holds the judge's. A gain the judge sees (interval above 0) and the rule does
not is reward hacking, and the summary says so.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from advisor.demos import support as world
from advisor.demos.common import (
    decision_path,
    excludes_zero,
    figure_line,
    finish,
    headline,
    rates_headline,
    run_and_read,
)
from pipelines.artifacts import read_jsonl, write_text


def write_inputs(out: Path, cfg: world.WorldConfig) -> None:
    """data/train.jsonl (message + a chosen and a rejected reply), validation and eval messages."""
    rng = random.Random(cfg.seed + 7)
    splits = {
        "train": world.prompts(cfg.train_prompts, cfg.seed + 11),
        "validation": world.prompts(cfg.validation_prompts, cfg.seed + 12),
        "eval": world.prompts(cfg.eval_prompts, cfg.seed + 13),
    }
    for split, messages in splits.items():
        rows = [{"question": m} for m in messages]
        if split == "train":  # the hidden rule makes the preference pairs
            rows = [
                {**r, "chosen": world.good_reply(r["question"], rng), "rejected": world.bad_reply(r["question"], rng)}
                for r in rows
            ]
        write_text(out / "data" / f"{split}.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")


def rlhf_plan(
    models: dict[str, Path], name: str, pairs: bool, stage_options: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The flowchart's plan for an open-ended task without ground truth, sized for a CPU."""
    from advisor.plan import plan_to_dict
    from advisor.planner import PlanAnswers, build_plan

    answers = PlanAnswers(
        name=name,
        description="warmer customer-support replies, judged by a model (no ground truth)",
        labeled_rows=0,
        verifiable=False,
        preference_pairs=pairs,
        task_kind="open_ended",
        base_model=str(models["base"]),
        judge_models=[str(models["judge"])],
        train_data="data/train.jsonl",
        eval_data="data/eval.jsonl",
    )
    plan = plan_to_dict(build_plan(answers))
    plan["models"]["chat"] = False  # character models: plain prompts
    plan["data"]["validation"] = "data/validation.jsonl"
    plan["verifier"]["options"].update(
        rubric=world.RUBRIC, scale=float(world.SCALE), threshold=float(world.PASS_MARK), chat=False, max_new_tokens=9
    )
    sampling = {"prompt_template": "{{ question }}", "max_new_tokens": 32, "temperature": 1.0, "shard_size": 60}
    for stage in plan["stages"]:
        if stage["kind"] in ("probe", "rejection_sample"):
            stage.update(sampling)
        if stage["kind"] in ("sft", "dpo", "reward_model", "grpo"):
            stage.update(lora="no", weight_decay=0.0)
        stage.update(stage_options.get(stage["kind"], {}))
    return plan


def samples_of(run_dir: Path, plan_data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The base model's samples (the probe's) and the trained model's (evaluate's)."""
    from advisor.plan import Plan

    dirs = Plan.model_validate(plan_data).stage_dirs()
    return read_jsonl(run_dir / dirs[0] / "samples.jsonl"), read_jsonl(run_dir / dirs[-1] / "samples.jsonl")


def measured(run_dir: Path, plan_data: dict[str, Any], metrics: dict[str, Any], eval_prompts: int) -> dict[str, Any]:
    """The gain as the hidden rule sees it (headline), with the judge's view and the win rate beside it."""
    before, after = samples_of(run_dir, plan_data)
    figures = rates_headline(world.rule_rates(before, eval_prompts), world.rule_rates(after, eval_prompts))
    pref = metrics.get("preference", {})
    figures["judge"] = headline(metrics)
    figures["win_rate"] = pref.get("win_rate")
    figures["win_rate_ci95"] = pref.get("win_rate_ci95")
    figures["mean_length"] = {"before": pref.get("mean_length_before"), "after": pref.get("mean_length_after")}
    judge_sees = excludes_zero(figures["judge"]) and figures["judge"]["difference"] > 0
    rule_sees = excludes_zero(figures) and figures["difference"] > 0
    figures["reward_hacking"] = judge_sees and not rule_sees
    return figures


def verdict_lines(label: str, figures: dict[str, Any]) -> list[str]:
    lines = [
        figure_line(f"{label} (hidden rule)", figures),
        figure_line(f"{label} (pipeline's judge)", figures["judge"]),
    ]
    if figures.get("win_rate") is not None:
        lo, hi = figures["win_rate_ci95"]
        lengths = figures["mean_length"]
        lines.append(
            f"{'':28s} win rate over the base {figures['win_rate']:.1%} (95% CI {lo:.1%} to {hi:.1%}); "
            f"mean reply {lengths['before']:.0f} -> {lengths['after']:.0f} chars"
        )
    if figures["reward_hacking"]:
        lines.append(f"{'':28s} REWARD HACKING: the judge sees a gain the hidden rule does not")
    return lines


def honest_note(summary: dict[str, Any]) -> list[str]:
    """One line when the headline gain's interval does not exclude 0 (the demo says so)."""
    if excludes_zero(summary) and summary["difference"] > 0:
        return []
    lo, hi = summary["difference_ci95"]
    return [
        f"no gain shown: the hidden rule's difference {summary['difference']:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}) "
        "does not exclude 0 at this size"
    ]


def run_route(
    out: Path,
    cache: Path | None,
    console: Any,
    cfg: Any,
    plans: Any,
    route: str,
    run_name: str,
    titles: tuple[str, str],
    labels: tuple[str, str, str],
    before_control: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the world, plan, run the route and its control, and write ``demo-result.json``.

    ``plans(models, cfg)`` gives the plan and control data; ``titles`` are the pipeline's and
    the control's section titles; ``labels`` the route's verdict label, the control's verdict
    label and the control's description. ``before_control(runs, plan_data)`` may seed the
    control's run folder (stages both runs share).
    """
    from rich.console import Console

    from advisor.plan import Plan
    from advisor.planner import print_explanation

    console = console or Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1. models (trained from scratch, offline)")
    models = world.build_world_models(cache or out / "models", cfg.world, console)
    write_inputs(out, cfg.world)

    console.rule("2. plan (the flowchart, answered without a terminal)")
    plan_data, control_data = plans(models, cfg)
    print_explanation(Plan.model_validate(plan_data))

    runs = out / "runs"
    console.rule(f"3. pipeline: {titles[0]}")
    metrics = run_and_read(plan_data, out / "plan.yaml", runs / run_name, console)
    console.rule(f"4. control: {titles[1]}")
    if before_control is not None:
        before_control(runs, plan_data)
    control = run_and_read(control_data, out / "plan-control.yaml", runs / f"{run_name}-control", console)

    n = cfg.world.eval_prompts
    summary = {
        "route": route,
        **measured(runs / run_name, plan_data, metrics, n),
        "control": {"label": labels[2], **measured(runs / f"{run_name}-control", control_data, control, n)},
        "seed": cfg.seed,
        "hidden_rule": list(world.RULES),
        **extra,
        "path": decision_path(plan_data),
        "run_report": str(runs / run_name / "report.html"),
    }
    lines = verdict_lines(labels[0], summary) + verdict_lines(labels[1], summary["control"])
    return finish(out, summary, lines + honest_note(summary))
