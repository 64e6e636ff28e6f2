"""Stage ``rejection_sample``: the RFT data loop (generate, verify, keep the correct).

For every training prompt the current policy writes ``samples`` answers (default
16); the plan's verifier grades each; correct answers are kept, de-duplicated by
reasoning path (normalised text, and for math the sequence of intermediate
equations), and capped at ``max_per_prompt`` per prompt (10, as in ReST-EM).
Gains track the number of *distinct* correct paths (Yuan et al. 2023), which is
why duplicates are dropped rather than counted twice.

TRL has no rejection-sampling trainer (BestOfNSampler and IterativeSFTTrainer were
removed); this stage is the generate-and-filter half, and ``sft`` trains on it.

Inputs: ``data.train`` prompts and answers (less the validation prompts that choose
checkpoints; with ``limit``, a seeded sample of them), the policy (the last trained model, else
``models.base``), the probe's prompt style, and an earlier ``synthesize`` stage's
judged teacher solutions if there is one (they join the SFT data).
Outputs: ``samples.jsonl`` (every sample with its verdict), ``sft.jsonl`` (TRL
prompt/completion rows), ``pairs.jsonl`` (DPO: a verified-correct ``chosen`` and a
verified-wrong ``rejected`` for the same prompt), ``metrics.json``.
Run alone: ``advisor run plan.yaml --only rejection_sample``.
"""

from __future__ import annotations

import re
from typing import Any

from pipelines.artifacts import read_jsonl, write_jsonl
from pipelines.context import StageContext, StageResult
from pipelines.data import render_prompts, sample_rows, training_splits
from pipelines.sampling import generator_for, sample_and_verify, verifier_for

_EQUATION = re.compile(r"([0-9().+\-*/^× ]*[0-9)])\s*=\s*(-?[0-9][0-9.,/]*)")


def path_key(text: str, task_kind: str) -> str:
    """What makes two correct answers the same reasoning path.

    Math: the sequence of intermediate equations (``12+7=19``) when present, so
    rephrasings of one derivation count once. Otherwise the text, lower-cased with
    whitespace collapsed.

    >>> path_key("So 3 + 4 = 7, then 7*2 = 14.", "math") == path_key("3+4=7 and 7 * 2=14", "math")
    True
    """
    if task_kind == "math":
        eqs = [re.sub(r"\s+", "", f"{lhs}={rhs}").rstrip(".,") for lhs, rhs in _EQUATION.findall(text)]
        if len(eqs) >= 1:
            return "eq:" + "|".join(eqs)
    return "text:" + " ".join(text.lower().split())


def load_prompts(ctx: StageContext) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """The training prompts (validation ones left out), or a seeded sample of ``limit`` of them."""
    plan, settings, opts = ctx.plan, ctx.prompts, ctx.stage
    rows = sample_rows(training_splits(plan.data, ctx.plan_dir).train, opts.limit, opts.seed)
    prompts = render_prompts(
        rows, plan.data.prompt_field, settings.style, plan.task.kind, plan.models.chat, inline=settings.template
    )
    refs = [r.get(plan.data.answer_field) for r in rows]
    return rows, prompts, refs


def select(samples: list[dict[str, Any]], num_prompts: int, opts: Any, task_kind: str) -> dict[str, Any]:
    """Keep correct (or, for a control run, all) samples, distinct per prompt, capped; build DPO pairs."""
    by_prompt: list[list[dict[str, Any]]] = [[] for _ in range(num_prompts)]
    for s in samples:
        by_prompt[s["prompt_index"]].append(s)
    kept, pairs, distinct = [], [], []
    for group in by_prompt:
        good = (
            [s for s in group if s["passed"]] if opts.keep == "verified" else [s for s in group if s["sample"].strip()]
        )
        bad = [s for s in group if not s["passed"] and s.get("gradable", True)]
        seen: set[str] = set()
        unique = []
        for s in good:
            key = path_key(s["sample"], task_kind) if opts.dedupe else str(s["sample_index"])
            if key not in seen:
                seen.add(key)
                unique.append(s)
        distinct.append(len({path_key(s["sample"], task_kind) for s in group if s["passed"]}))
        chosen = unique[: opts.max_per_prompt]
        kept.extend(chosen)
        matched = list(zip(chosen, bad, strict=False))
        if not matched:
            matched = graded_pair(group)
        for c, r in matched:
            pairs.append(
                {
                    "prompt": c["prompt"],
                    "chosen": c["sample"],
                    "rejected": r["sample"],
                    "prompt_index": c["prompt_index"],
                }
            )
    return {"kept": kept, "pairs": pairs, "distinct": distinct, "by_prompt": by_prompt}


def graded_pair(group: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A graded verifier's (judge, reward model) best and worst sample, when no pass/fail pair exists.

    Binary verifiers score 0 or 1, so their scores differ only when a pass/fail pair exists.

    >>> graded_pair([{"score": 0.5, "gradable": True, "sample": "a"}, {"score": 0.75, "gradable": True, "sample": "b"}])[0][0]["sample"]
    'b'
    """
    scored = [s for s in group if s.get("gradable", True) and isinstance(s.get("score"), (int, float))]
    if len(scored) < 2:
        return []
    best = max(scored, key=lambda s: s["score"])
    worst = min(scored, key=lambda s: s["score"])
    return [(best, worst)] if best["score"] > worst["score"] else []


def teacher_rows(ctx: StageContext) -> list[dict[str, Any]]:
    folder = ctx.earlier("synthesize")
    if folder is None or not (folder / "sft.jsonl").exists():
        return []
    return [{**r, "source": "teacher"} for r in read_jsonl(folder / "sft.jsonl")]


def run(ctx: StageContext) -> StageResult:
    plan, opts = ctx.plan, ctx.stage
    verifier = verifier_for(plan, ctx.plan_dir)
    rows, prompts, refs = load_prompts(ctx)
    policy = ctx.policy
    generator = generator_for(ctx, policy)
    samples = sample_and_verify(
        ctx, generator, verifier, prompts, refs, ctx.dir / "shards", opts.samples, opts, label="rejection sampling"
    )
    picked = select(samples, len(prompts), opts, plan.task.kind)
    sft_rows = [
        {"prompt": s["prompt"], "completion": s["sample"], "prompt_index": s["prompt_index"], "source": "policy"}
        for s in picked["kept"]
    ]
    teacher = teacher_rows(ctx)
    sft_rows += teacher

    write_jsonl(ctx.dir / "samples.jsonl", samples)
    write_jsonl(ctx.dir / "sft.jsonl", sft_rows)
    write_jsonl(ctx.dir / "pairs.jsonl", picked["pairs"])

    total = len(samples)
    correct = sum(1 for s in samples if s["passed"])
    with_correct = sum(1 for d in picked["distinct"] if d > 0)
    missing = [i for i, d in enumerate(picked["distinct"]) if d == 0]
    kept_per_prompt = [sum(1 for s in picked["kept"] if s["prompt_index"] == i) for i in range(len(prompts))]
    metrics = {
        "policy": policy,
        "keep": opts.keep,
        "prompts": len(prompts),
        "samples": total,
        "pass_rate": correct / total if total else 0.0,
        "prompts_with_correct": with_correct,
        "prompts_without_correct": len(missing),
        "prompts_without_correct_examples": missing[:20],
        "distinct_correct_per_prompt": sum(picked["distinct"]) / len(prompts) if prompts else 0.0,
        "rows": len(sft_rows),
        "policy_rows": len(picked["kept"]),
        "teacher_rows": len(teacher),
        "yield": len(picked["kept"]) / total if total else 0.0,
        "rows_per_prompt": sum(kept_per_prompt) / max(1, sum(1 for k in kept_per_prompt if k)),
        "pairs": len(picked["pairs"]),
    }
    ctx.console.print(
        f"  pass rate {metrics['pass_rate']:.1%}; kept {metrics['policy_rows']} distinct samples "
        f"({metrics['distinct_correct_per_prompt']:.2f} distinct correct paths per prompt); "
        f"{len(missing)} of {len(prompts)} prompts had no correct sample; {len(picked['pairs'])} DPO pairs"
    )
    if opts.keep == "all":
        ctx.console.print("  [yellow]keep: all — unverified samples kept (control run)[/yellow]")
    if not sft_rows:
        ctx.console.print("  [red]no sample was kept: the policy never succeeded on the training prompts[/red]")
    return StageResult(
        metrics=metrics,
        outputs={"samples": ctx.dir / "samples.jsonl", "sft": ctx.dir / "sft.jsonl", "pairs": ctx.dir / "pairs.jsonl"},
        summary=f"pass {metrics['pass_rate']:.1%}; {len(sft_rows)} SFT rows, {len(picked['pairs'])} pairs",
    )
