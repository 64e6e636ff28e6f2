"""Stage ``probe``: is fine-tuning worth it at all?

Samples the base model ``samples`` times on held-out prompts, verifies every
sample, and reports pass@1, unbiased pass@k, format compliance, the per-prompt
difficulty histogram and how many prompts carry no GRPO signal. Fine-tuning has a
real chance only when at least ``gate`` (default 20%) of prompted answers are
already right; below that the run stops (exit 1) with a verdict.

With ``prompt_style: compare`` (a provisional plan: does chain-of-thought help?)
it probes a direct and a chain-of-thought prompt and settles the route: rft when
chain-of-thought wins by at least :data:`advisor.flowchart.COT_GAIN`, else sft.

Inputs: ``data.eval`` (or ``data.train``), ``models.base``, the plan's verifier.
Outputs: ``samples.jsonl`` (prompt, sample, verdict, reason) and ``metrics.json``.
Run alone: ``advisor run plan.yaml --only probe``.
"""

from __future__ import annotations

from typing import Any

from advisor.flowchart import COT_GAIN
from pipelines.artifacts import write_jsonl
from pipelines.context import StageContext, StageResult
from pipelines.data import load_rows, render_prompts
from pipelines.sampling import generator_for, per_prompt_counts, sample_and_verify, verifier_for
from pipelines.stats import histogram, ks_for, mean_pass_at_k, no_signal_probability, wilson


def load_prompts(ctx: StageContext) -> list[dict[str, Any]]:
    plan, opts = ctx.plan, ctx.stage
    source = plan.data.eval or plan.data.train
    label = "data.eval" if plan.data.eval else "data.train"
    return load_rows(
        source,
        ctx.plan_dir,
        fields=(plan.data.prompt_field,),
        limit=opts.limit,
        seed=opts.seed,
        label=label,
    )


def probe_metrics(rows: list[dict[str, Any]], num_prompts: int, samples: int, gate: float) -> dict[str, Any]:
    """pass@1, pass@k, Wilson interval, format compliance, difficulty histogram, GRPO signal."""
    counts = [(n, c) for n, c in per_prompt_counts(rows, num_prompts) if n > 0]
    rates = [c / n for n, c in counts]
    pass1 = sum(rates) / len(rates) if rates else 0.0
    lo, hi = wilson(pass1 * len(rates), len(rates))
    n_min = min((n for n, _ in counts), default=0)
    no_signal = sum(1 for r in rates if r in (0.0, 1.0)) / len(rates) if rates else 0.0
    formatted = sum(1 for r in rows if str(r.get("extracted") or "").strip())  # an empty extraction is no answer
    ungradable = sum(1 for r in rows if not r.get("gradable", True))
    reasons: dict[str, int] = {}
    for r in rows:
        status = r["reason"].split(":", 1)[0]
        reasons[status] = reasons.get(status, 0) + 1
    return {
        "prompts": num_prompts,
        "graded_prompts": len(rates),
        "samples_per_prompt": samples,
        "pass@1": pass1,
        "pass@1_ci95": [lo, hi],
        "pass@k": {str(k): mean_pass_at_k(counts, k) for k in ks_for(n_min)} if n_min else {},
        "format_compliance": formatted / len(rows) if rows else 0.0,
        "ungradable_samples": ungradable,
        "verdicts": reasons,
        "difficulty_histogram": histogram(rates),
        "no_signal_share": no_signal,
        "no_signal_expected": no_signal_probability(pass1, samples),
        "no_signal_at_gate": no_signal_probability(gate, samples),
        "all_wrong_share": sum(1 for r in rates if r == 0.0) / len(rates) if rates else 0.0,
        "all_right_share": sum(1 for r in rates if r == 1.0) / len(rates) if rates else 0.0,
    }


#: Format compliance at or above which a failed gate is the model's skill, not its format.
FORMAT_OK = 0.9


def gate_verdict(m: dict[str, Any], gate: float, model: str) -> str:
    """Why the gate failed and what to change, read from the measured format compliance."""
    lo, hi = m["pass@1_ci95"]
    compliance = m["format_compliance"]
    head = (
        f"probe: pass@1 = {m['pass@1']:.1%} (95% CI {lo:.1%} to {hi:.1%}) on {m['graded_prompts']} prompts is under "
        f"the {gate:.0%} gate for {model}. Fine-tuning is unlikely to pay. "
    )
    if compliance >= FORMAT_OK:
        return head + (
            f"The answers are in the expected format (format compliance {compliance:.0%}) but wrong: the model "
            "cannot solve these prompts: change the base model to a stronger one, or start from easier data."
        )
    return head + (
        f"First improve the prompt until the model emits the expected format (format compliance now "
        f"{compliance:.0%}); if no prompt gets there, change the base model. "
        "A stronger teacher cannot fix a student that never succeeds."
    )


def describe(m: dict[str, Any], gate: float, samples: int) -> list[str]:
    lo, hi = m["pass@1_ci95"]
    ks = ", ".join(f"pass@{k} {v:.1%}" for k, v in m["pass@k"].items())
    return [
        f"pass@1 {m['pass@1']:.1%} (95% CI {lo:.1%} to {hi:.1%}); {ks}",
        f"format compliance {m['format_compliance']:.1%}; verdicts {m['verdicts']}",
        f"GRPO signal: {m['no_signal_share']:.1%} of prompts are all right or all wrong over {samples} samples "
        f"(p^G + (1-p)^G = {m['no_signal_expected']:.1%} at p = {m['pass@1']:.0%}; "
        f"at the {gate:.0%} gate it would be {m['no_signal_at_gate']:.1%})",
    ]


def probe_style(
    ctx: StageContext, generator: Any, verifier: Any, rows: list[dict[str, Any]], style: str
) -> dict[str, Any]:
    plan, opts = ctx.plan, ctx.stage
    prompts = render_prompts(
        rows, plan.data.prompt_field, style, plan.task.kind, plan.models.chat, inline=opts.prompt_template
    )
    refs = [r.get(plan.data.answer_field) for r in rows]
    samples = sample_and_verify(
        ctx,
        generator,
        verifier,
        prompts,
        refs,
        ctx.dir / f"shards-{style}",
        opts.samples,
        opts,
        label=f"probe ({style})",
        extra=[{"style": style}] * len(rows),
    )
    return {"rows": samples, "metrics": probe_metrics(samples, len(rows), opts.samples, opts.gate)}


def run(ctx: StageContext) -> StageResult:
    plan, opts = ctx.plan, ctx.stage
    verifier = verifier_for(plan, ctx.plan_dir)
    rows = load_prompts(ctx)
    generator = generator_for(ctx, plan.models.base)
    styles = ["direct", "cot"] if opts.prompt_style == "compare" else [opts.prompt_style]
    results = {style: probe_style(ctx, generator, verifier, rows, style) for style in styles}

    settled = None
    if opts.prompt_style == "compare":
        gain = results["cot"]["metrics"]["pass@1"] - results["direct"]["metrics"]["pass@1"]
        settled = "rft" if gain >= COT_GAIN else "sft"
        chosen = "cot" if settled == "rft" else "direct"
    else:
        chosen = styles[0]
    metrics = dict(results[chosen]["metrics"])
    split = "data.eval" if plan.data.eval else "data.train"
    metrics.update(style=chosen, gate=opts.gate, model=plan.models.base, verifier=plan.verifier.name, split=split)
    if settled:
        metrics["compare"] = {
            s: {"pass@1": r["metrics"]["pass@1"], "pass@1_ci95": r["metrics"]["pass@1_ci95"]}
            for s, r in results.items()
        }
        metrics["cot_gain"] = gain
        metrics["settled_route"] = settled
        metrics["settle_rule"] = f"rft if cot pass@1 - direct pass@1 >= {COT_GAIN}, else sft"

    samples_path = ctx.dir / "samples.jsonl"
    write_jsonl(samples_path, (r for res in results.values() for r in res["rows"]))
    for line in describe(metrics, opts.gate, opts.samples):
        ctx.console.print(f"  {line}")
    if settled:
        ctx.console.print(
            f"  direct {results['direct']['metrics']['pass@1']:.1%} vs chain-of-thought "
            f"{results['cot']['metrics']['pass@1']:.1%}: route settled to {settled}"
        )
    passed = metrics["pass@1"] >= opts.gate
    metrics["gate_passed"] = passed
    summary = f"pass@1 {metrics['pass@1']:.1%} ({chosen}); gate {opts.gate:.0%} {'passed' if passed else 'FAILED'}"
    return StageResult(
        metrics=metrics,
        outputs={"samples": samples_path},
        summary=summary,
        stop=None if passed else gate_verdict(metrics, opts.gate, plan.models.base),
        settled_route=settled,
    )
