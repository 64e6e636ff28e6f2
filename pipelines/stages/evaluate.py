"""Stage ``evaluate``: re-probe the trained model, so the result is a measured change.

It samples the trained model on the probe's prompts with the probe's exact
settings (same rows, prompt style, samples per prompt, temperature, seed) and
compares per-prompt pass rates with the probe's: pass@1 before and after, and the
mean paired difference with a 95% confidence interval. With ``data.ood_eval`` it
also measures base and trained model on an out-of-distribution split (e.g. the 24
game's ``rank`` rule after training on ``ten``).

Inputs: the probe stage's metrics and samples, the last trained ``model/``.
Outputs: ``samples.jsonl``, ``metrics.json``; the runner then writes ``report.html``.
Run alone: ``advisor run plan.yaml --only evaluate``.
"""

from __future__ import annotations

from typing import Any

from advisor.errors import StageFailed
from pipelines.artifacts import read_jsonl, write_jsonl
from pipelines.context import StageContext, StageResult
from pipelines.data import load_rows, render_prompts
from pipelines.sampling import generator_for, per_prompt_counts, sample_and_verify, verifier_for
from pipelines.stages.probe import probe_metrics
from pipelines.stats import paired_difference


def rates(rows: list[dict[str, Any]], num_prompts: int) -> list[float]:
    return [c / n if n else 0.0 for n, c in per_prompt_counts(rows, num_prompts)]


def measure(ctx: StageContext, verifier: Any, model: str, rows: list[dict[str, Any]], folder: str, label: str):
    plan, settings = ctx.plan, ctx.prompts
    probe = settings.probe
    prompts = render_prompts(
        rows, plan.data.prompt_field, settings.style, plan.task.kind, plan.models.chat, settings.template
    )
    refs = [r.get(plan.data.answer_field) for r in rows]
    samples = sample_and_verify(
        ctx, generator_for(ctx, model), verifier, prompts, refs, ctx.dir / folder, probe.samples, probe, label
    )
    return samples, probe_metrics(samples, len(rows), probe.samples, probe.gate)


def compare(before: list[float], after: list[float]) -> dict[str, Any]:
    mean, lo, hi = paired_difference(before, after)
    return {"mean": mean, "ci95": [lo, hi], "prompts": len(before)}


def run(ctx: StageContext) -> StageResult:
    plan = ctx.plan
    probe, style = ctx.prompts.probe, ctx.prompts.style
    probe_dir = ctx.earlier("probe")
    if probe is None or probe_dir is None:
        raise StageFailed("evaluate re-probes with the probe's settings: the plan needs a finished probe stage")
    verifier = verifier_for(plan)
    trained = ctx.policy
    if trained == plan.models.base:
        raise StageFailed("evaluate needs a model trained by an earlier stage (sft, psft, dpo, grpo or rloo)")

    rows = load_rows(
        plan.data.eval or plan.data.train,
        ctx.plan_dir,
        fields=(plan.data.prompt_field,),
        limit=probe.limit,
        seed=probe.seed,
        label="data.eval",
    )
    before_samples = [r for r in read_jsonl(probe_dir / "samples.jsonl") if r.get("style", style) == style]
    before = probe_metrics(before_samples, len(rows), probe.samples, probe.gate)
    after_samples, after = measure(ctx, verifier, trained, rows, "shards", "evaluate")
    diff = compare(rates(before_samples, len(rows)), rates(after_samples, len(rows)))
    metrics: dict[str, Any] = {
        "model": trained,
        "base": plan.models.base,
        "style": style,
        "before": before,
        "after": after,
        "difference": diff,
        "per_prompt_before": rates(before_samples, len(rows)),
        "per_prompt_after": rates(after_samples, len(rows)),
    }
    if plan.data.ood_eval:
        ood_rows = load_rows(plan.data.ood_eval, ctx.plan_dir, fields=(plan.data.prompt_field,), label="data.ood_eval")
        ood_before_samples, ood_before = measure(ctx, verifier, plan.models.base, ood_rows, "ood-base", "ood (base)")
        ood_after_samples, ood_after = measure(ctx, verifier, trained, ood_rows, "ood-trained", "ood (trained)")
        metrics["ood"] = {
            "before": ood_before,
            "after": ood_after,
            "difference": compare(rates(ood_before_samples, len(ood_rows)), rates(ood_after_samples, len(ood_rows))),
        }
    write_jsonl(ctx.dir / "samples.jsonl", after_samples)

    lo, hi = diff["ci95"]
    line = (
        f"pass@1 {before['pass@1']:.1%} -> {after['pass@1']:.1%} "
        f"({diff['mean']:+.1%}, 95% CI {lo:+.1%} to {hi:+.1%}, {len(rows)} prompts)"
    )
    ctx.console.print(f"  {line}")
    if "ood" in metrics:
        o = metrics["ood"]
        ctx.console.print(
            f"  out of distribution: {o['before']['pass@1']:.1%} -> {o['after']['pass@1']:.1%} "
            f"({o['difference']['mean']:+.1%})"
        )
    return StageResult(metrics=metrics, outputs={"samples": ctx.dir / "samples.jsonl"}, summary=line)
