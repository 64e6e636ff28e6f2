"""Stage ``synthesize``: a stronger teacher writes solutions; a judge panel keeps the agreed ones.

For every training prompt without a gold solution, the teacher writes ``samples``
candidate solutions. Each candidate is labelled by every judge model (a rubric
prompt asking for ``{"pass", "score", "reason"}``) and, on a verifiable task, by
the plan's verifier as one more judge. A pair is kept when the panel agrees
(``majority``, ``unanimous`` or ``mean_score >= threshold``); with
``require_verifier`` no pair passes on votes alone if the verifier rejects it.
Three small judges from different families, voting, agree with humans better
than one large judge (PoLL, Verga et al. 2024); when their agreement (Fleiss'
kappa) is below moderate the stage warns, because then the labels are noise.

Optionally ``new_prompts`` more prompts are written by the teacher from few-shot
seed examples (``templates/synthesize_prompts.j2``) and de-duplicated against the
seeds. Kept pairs are curated (secrets and e-mails removed, length filter,
near-duplicates dropped, answer-style uniformity report, eval contamination check).

Inputs: ``data.train`` (prompts, gold answers, optional ``data.solution_field``),
``models.teacher``, ``models.judges``, the plan's verifier.
Outputs: ``pairs.jsonl`` (every candidate with every vote and the verdict),
``sft.jsonl`` (kept pairs in TRL prompt/completion form), ``metrics.json``.
Run alone: ``advisor run plan.yaml --only synthesize``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pipelines import curation
from pipelines.artifacts import write_jsonl
from pipelines.contamination import contamination_report, decontaminate
from pipelines.context import StageContext, StageResult
from pipelines.data import load_rows, render_prompts, training_splits
from pipelines.judging import VERIFIER, aggregate, agreement_report, judge_pairs, provenance
from pipelines.labels import Label, verifier_label
from pipelines.sampling import generator_for, sample_and_verify, verifier_for


class PlainPrompts:
    """Adapts chat-message prompts to plain text for models without a chat template."""

    def __init__(self, generator: Any):
        self.generator = generator

    def generate(self, prompts: list[Any], **kwargs: Any) -> list[list[str]]:
        texts = [p if isinstance(p, str) else "\n".join(m["content"] for m in p) for p in prompts]
        return self.generator.generate(texts, **kwargs)


def load_prompts(ctx: StageContext) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training rows split into (needs a teacher solution, already has a gold solution)."""
    plan = ctx.plan
    rows = training_splits(plan.data, ctx.plan_dir).train  # validation prompts never reach training
    field = plan.data.solution_field
    gold = [r for r in rows if field and str(r.get(field) or "").strip()]
    todo = [r for r in rows if not (field and str(r.get(field) or "").strip())]
    return todo, gold


def new_prompts(ctx: StageContext, teacher: Any, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask the teacher for ``new_prompts`` more questions in the style of the seeds (no answers)."""
    from advisor.render import render

    opts, plan = ctx.stage, ctx.plan
    if not opts.new_prompts or not seeds:
        return []
    examples = [s[plan.data.prompt_field] for s in seeds[:8]]
    text = render("synthesize_prompts.j2", examples=examples, task_kind=plan.task.kind)
    prompt = [{"role": "user", "content": text}] if plan.models.chat else text
    outputs = teacher.generate(
        [prompt],
        n=opts.new_prompts,
        temperature=1.0,
        top_p=opts.top_p,
        max_new_tokens=opts.max_new_tokens,
        seed=opts.seed,
    )[0]
    candidates = [
        {plan.data.prompt_field: o.strip().splitlines()[0].strip(), "synthetic_prompt": True}
        for o in outputs
        if o.strip()
    ]
    pool = [{plan.data.prompt_field: q, "seed": True} for q in examples] + candidates
    kept, _ = curation.dedupe_near(pool, plan.data.prompt_field)
    return [r for r in kept if r.get("synthetic_prompt")]


def judge(
    ctx: StageContext, candidates: list[dict[str, Any]], prompts: list[Any], verifier: Any
) -> list[dict[str, Any]]:
    """Every judge's label for every candidate, plus the verifier's when the task is verifiable."""
    plan, opts = ctx.plan, ctx.stage
    judges = {f"judge{i + 1}:{model.rstrip('/').split('/')[-1]}": model for i, model in enumerate(plan.models.judges)}
    pairs = [{"question": c["question"], "answer": c["sample"], "reference": c["reference"]} for c in candidates]
    votes: list[dict[str, Any]] = [{} for _ in pairs]
    with ctx.progress("judging", total=max(1, len(judges)), unit="judges") as advance:
        for name, model in judges.items():  # one engine at a time: each is released after its votes
            engine = generator_for(ctx, model)
            gen = engine if plan.models.chat else PlainPrompts(engine)
            if opts.judge_mode == "solve":
                labels = solve_and_compare(gen, candidates, prompts, verifier, opts)
            else:
                labels = [
                    row[name]
                    for row in judge_pairs(
                        {name: gen},
                        pairs,
                        opts.rubric,
                        plan.task.kind,
                        max_new_tokens=opts.judge_max_new_tokens,
                        seed=opts.seed,
                    )
                ]
            for row, label in zip(votes, labels, strict=True):
                row[name] = label
            ctx.release(engine)
            advance(1)
    if plan.answers.verifiable:
        for row, c in zip(votes, candidates, strict=True):
            row[VERIFIER] = verifier_label(c["verdict"])
    return votes


def solve_and_compare(generator: Any, candidates: list[dict[str, Any]], prompts: list[Any], verifier: Any, opts: Any):
    """``judge_mode: solve``: the judge answers each question itself (greedy); it votes pass
    when the candidate's answer matches its own under the plan's verifier.

    This turns any model that can do the task, instruction-tuned or not, into a judge.
    The judge's answer stands in for a reference, so a judge that cannot solve a
    question votes fail on it: panel agreement (kappa) shows how far to trust it.
    """

    asked = sorted({c["prompt_index"] for c in candidates})
    outputs = generator.generate(
        [prompts[i] for i in asked], n=1, temperature=0.0, top_p=1.0, max_new_tokens=opts.max_new_tokens, seed=opts.seed
    )
    own = {i: (out[0] if out else "") for i, out in zip(asked, outputs, strict=True)}
    verdicts = verifier.verify_batch([c["sample"] for c in candidates], [own[c["prompt_index"]] for c in candidates])
    return [
        Label(None, None, f"abstain: {v.reason}", own[c["prompt_index"]])
        if not v.gradable
        else Label(
            v.passed,
            10.0 if v.passed else 0.0,
            f"judge solved it as {own[c['prompt_index']]!r}",
            own[c["prompt_index"]],
        )
        for c, v in zip(candidates, verdicts, strict=True)
    ]


def curate(
    ctx: StageContext, kept: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    plan = ctx.plan
    steps = [
        partial(curation.remove_sensitive, keys=("prompt_text", "completion")),
        partial(curation.filter_length, key="completion", min_chars=1, max_chars=20_000),
        partial(curation.dedupe_exact, key="dedupe_key"),
    ]
    eval_rows = []
    if plan.data.eval:
        eval_rows = load_rows(plan.data.eval, ctx.plan_dir, fields=(plan.data.prompt_field,), label="data.eval")
        # teacher-written prompts that copy an eval item would inflate the gain evaluate reports
        steps.append(partial(decontaminate, eval_rows=eval_rows, key="prompt_text", key_eval=plan.data.prompt_field))
    rows, logs = curation.run_pipeline(kept, steps)
    style = curation.style_report([r["completion"] for r in rows])
    contamination: dict[str, Any] = {}
    if eval_rows:
        contamination = contamination_report(rows, eval_rows, "prompt_text", plan.data.prompt_field)
    return rows, [entry.to_dict() for entry in logs], {"style": style, "contamination": contamination}


def run(ctx: StageContext) -> StageResult:
    plan, opts = ctx.plan, ctx.stage
    style, template = ctx.prompts.style, ctx.prompts.template
    verifier = verifier_for(plan, ctx.plan_dir)
    todo, gold = load_prompts(ctx)
    teacher = generator_for(ctx, plan.models.teacher)
    todo = todo + new_prompts(ctx, teacher, todo + gold)
    prompts = render_prompts(todo, plan.data.prompt_field, style, plan.task.kind, plan.models.chat, template)
    refs = [r.get(plan.data.answer_field) for r in todo]
    samples = sample_and_verify(
        ctx, teacher, verifier, prompts, refs, ctx.dir / "shards", opts.samples, opts, label="teacher"
    )
    candidates = [
        {
            **s,
            "question": todo[s["prompt_index"]][plan.data.prompt_field],
            "verdict": _verdict(s),
        }
        for s in samples
    ]
    ctx.release(teacher)  # the judges load next
    votes = judge(ctx, candidates, prompts, verifier)
    require = (VERIFIER,) if opts.require_verifier and plan.answers.verifiable else ()
    out_rows, kept = [], []
    for c, v in zip(candidates, votes, strict=True):
        decision = aggregate(v, method=opts.aggregation, threshold=opts.threshold, require=require)
        record = {
            "prompt_index": c["prompt_index"],
            "question": c["question"],
            "answer": c["sample"],
            "reference": c["reference"],
            "teacher": plan.models.teacher,
            "kept": decision.kept,
            **provenance(v, decision),
        }
        out_rows.append(record)
        if decision.kept:
            kept.append(
                {
                    "prompt": c["prompt"],
                    "completion": c["sample"],
                    "prompt_text": c["question"],
                    "dedupe_key": f"{c['prompt_index']}\x00{' '.join(c['sample'].split())}",
                    "source": "teacher",
                }
            )
    agreement = agreement_report(votes)
    curated, curation_log, reports = curate(ctx, kept)
    gold_rows = [
        {"prompt": p, "completion": r[plan.data.solution_field], "source": "gold"}
        for r, p in zip(
            gold,
            render_prompts(gold, plan.data.prompt_field, style, plan.task.kind, plan.models.chat, template),
            strict=True,
        )
    ]
    sft_rows = [{k: r[k] for k in ("prompt", "completion", "source")} for r in curated] + gold_rows

    write_jsonl(ctx.dir / "pairs.jsonl", out_rows)
    write_jsonl(ctx.dir / "sft.jsonl", sft_rows)
    metrics = {
        "teacher": plan.models.teacher,
        "judges": list(plan.models.judges),
        "prompts": len(todo),
        "gold_rows": len(gold),
        "candidates": len(candidates),
        "verifier_pass_rate": sum(c["passed"] for c in candidates) / len(candidates) if candidates else 0.0,
        "kept": len(kept),
        "kept_after_curation": len(curated),
        "aggregation": opts.aggregation,
        "require_verifier": bool(require),
        "agreement": {
            "fleiss": agreement["fleiss"]["kappa"],
            "reading": agreement["fleiss"]["reading"],
            "pairwise": {k: p["kappa"] for k, p in agreement["pairwise"].items()},
            "per_rater": agreement["per_rater"],
            "warning": agreement["warning"],
            "note": agreement["note"],
        },
        "curation": curation_log,
        **reports,
    }
    fleiss = agreement["fleiss"]["kappa"]
    ctx.console.print(
        f"  teacher wrote {len(candidates)} candidates for {len(todo)} prompts; panel kept {len(kept)} "
        f"({len(curated)} after curation); Fleiss' kappa "
        f"{'n/a' if fleiss is None else f'{fleiss:.2f}'} ({agreement['fleiss']['reading']})"
    )
    if agreement["warning"]:
        ctx.console.print(f"  [yellow]warning: {agreement['warning']}[/yellow]")
    if reports["style"].get("warning"):
        ctx.console.print(f"  [yellow]warning: {reports['style']['warning']}[/yellow]")
    return StageResult(
        metrics=metrics,
        outputs={"pairs": ctx.dir / "pairs.jsonl", "sft": ctx.dir / "sft.jsonl"},
        summary=f"{len(curated)}/{len(candidates)} teacher pairs kept by the panel",
    )


def _verdict(sample: dict[str, Any]) -> Any:
    from verifiers.base import Verdict

    return Verdict(sample["passed"], sample["score"], sample["reason"], sample["extracted"])
