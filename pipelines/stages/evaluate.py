"""Stage ``evaluate``: re-probe the trained model, so the result is a measured change.

It samples the trained model on the probe's prompts with the probe's exact
settings (same rows, prompt style, samples per prompt, temperature, seed) and
compares per-prompt pass rates with the probe's: pass@1 before and after, and the
mean paired difference with a 95% confidence interval.

On an RLHF plan it also reports the **pairwise win rate** of the trained model over
the base: sample j of the trained model against sample j of the base on the same
prompt, judged by the plan's scorer (a pairwise judge in both orders; a pointwise
judge or reward model by comparing scores), ties counting half, with a 95% interval
over prompts; and the **mean reply length** of both, since judges and reward models
are known to favour length. The scorer is the plan's verifier, never the reward
model the ``grpo``/``rloo`` stage optimised (that one lives in the ``reward_model``
stage's folder): a held-out scorer, so reward hacking shows up instead of hiding.
A judge panel's agreement (Fleiss' kappa) is reported too. With ``data.ood_eval`` it
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
from pipelines.sampling import generator_for, per_prompt_counts, prompt_text, sample_and_verify, verifier_for
from pipelines.stages.probe import probe_metrics
from pipelines.stats import mean_interval, paired_difference


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


def preference_metrics(
    ctx: StageContext, verifier: Any, before: list[dict[str, Any]], after: list[dict[str, Any]], num_prompts: int
) -> dict[str, Any]:
    """Win rate of the trained model's samples over the base's (same prompt, same sample index), and lengths."""
    base = {(r["prompt_index"], r["sample_index"]): r for r in before}
    pairs = [
        (r, base[(r["prompt_index"], r["sample_index"])])
        for r in after
        if (r["prompt_index"], r["sample_index"]) in base
    ]
    if hasattr(verifier, "compare"):
        outcomes = verifier.compare(
            [prompt_text(a["prompt"]) for a, _ in pairs],
            [a["sample"] for a, _ in pairs],
            [b["sample"] for _, b in pairs],
        )
    else:  # any other scorer: compare its scores
        outcomes = [
            None
            if a.get("score") is None or b.get("score") is None
            else float(a["score"] > b["score"]) + 0.5 * (a["score"] == b["score"])
            for a, b in pairs
        ]
    per_prompt: list[list[float]] = [[] for _ in range(num_prompts)]
    for (a, _), o in zip(pairs, outcomes, strict=True):
        if o is not None:
            per_prompt[a["prompt_index"]].append(o)
    means = [sum(v) / len(v) for v in per_prompt if v]
    win, lo, hi = mean_interval(means) if means else (None, None, None)
    graded = [o for o in outcomes if o is not None]

    def length(rows: list[dict[str, Any]]) -> float:
        return sum(len(str(r["sample"])) for r in rows) / len(rows) if rows else 0.0

    optimised = next((s.kind for s in ctx.plan.stages if s.kind in ("dpo", "reward_model")), None)
    out: dict[str, Any] = {
        "win_rate": win,
        "win_rate_ci95": [lo, hi],
        "pairs": len(pairs),
        "judged_pairs": len(graded),
        "wins": sum(o == 1.0 for o in graded),
        "ties": sum(o == 0.5 for o in graded),
        "losses": sum(o == 0.0 for o in graded),
        "mean_length_before": length(before),
        "mean_length_after": length(after),
        "scorer": ctx.plan.verifier.name,
        "optimised": {"dpo": "preference pairs (dpo)", "reward_model": "the trained reward model (grpo/rloo)"}.get(
            optimised or "", "none"
        ),
    }
    votes = [r["judges"] for r in after + before if r.get("judges")]
    if votes and len(votes[0]) > 1:
        from pipelines.judging import agreement_report
        from pipelines.labels import Label

        report = agreement_report(
            [{n: Label(j["pass"], j["score"], j["reason"], "") for n, j in v.items()} for v in votes]
        )
        out["judge_agreement"] = {"fleiss": report["fleiss"], "warning": report["warning"]}
    return out


def run(ctx: StageContext) -> StageResult:
    plan = ctx.plan
    probe, style = ctx.prompts.probe, ctx.prompts.style
    probe_dir = ctx.earlier("probe")
    if probe is None or probe_dir is None:
        raise StageFailed("evaluate re-probes with the probe's settings: the plan needs a finished probe stage")
    verifier = verifier_for(plan, ctx.plan_dir)
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
    if plan.route == "rlhf":
        metrics["preference"] = preference_metrics(ctx, verifier, before_samples, after_samples, len(rows))
    write_jsonl(ctx.dir / "samples.jsonl", after_samples)

    lo, hi = diff["ci95"]
    line = (
        f"pass@1 {before['pass@1']:.1%} -> {after['pass@1']:.1%} "
        f"({diff['mean']:+.1%}, 95% CI {lo:+.1%} to {hi:+.1%}, {len(rows)} prompts)"
    )
    ctx.console.print(f"  {line}")
    if "preference" in metrics and metrics["preference"]["win_rate"] is not None:
        p = metrics["preference"]
        wlo, whi = p["win_rate_ci95"]
        ctx.console.print(
            f"  win rate over the base {p['win_rate']:.1%} (95% CI {wlo:.1%} to {whi:.1%}; {p['ties']} ties, "
            f"{p['pairs']} pairs, judged by {p['scorer']}); mean reply length {p['mean_length_before']:.0f} -> "
            f"{p['mean_length_after']:.0f} chars"
        )
    if "ood" in metrics:
        o = metrics["ood"]
        ctx.console.print(
            f"  out of distribution: {o['before']['pass@1']:.1%} -> {o['after']['pass@1']:.1%} "
            f"({o['difference']['mean']:+.1%})"
        )
    return StageResult(metrics=metrics, outputs={"samples": ctx.dir / "samples.jsonl"}, summary=line)
