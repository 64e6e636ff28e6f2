"""Induce each failure ``advisor doctor`` names, for real, and check that it names it.

Every case is a real ``advisor run`` of a two-stage plan (probe, then one training stage)
on the demo's student: a 1M-parameter character-level Llama trained from scratch on
2-digit addition (about 30% sampled accuracy), built offline and cached. The failures are
induced with the settings practitioners get wrong (a learning rate far too high, DPO beta
0.01 and 5, GRPO with no KL and a high learning rate, a reward that pays for length, a
reward no sample can earn, a KL penalty far too strong, SFT on wrong answers); the
healthy cases use sensible settings for this model. The doctor then reads each run
directory, as a user would point it at theirs, and the table says whether it named the
induced failure (and raised no warning on the healthy runs).

Thresholds in ``pipelines/doctor/rules.py`` and the induced settings were set on seeds 0 to 9
(each seed: other data order, other samples); the committed tables are seeds 10 and 11, run
after the last change, so they report on runs no threshold was chosen on.

Run (about 3 minutes per seed on an idle 2-core machine)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_induced.py --seed 10   # and --seed 11

Each run prints its seed's table; ``benchmarks/doctor_induced.md`` holds the two, under notes
on how the rules were developed (``--write FILE`` writes one seed's table alone).
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_induced.py --only dpo_beta_high   # one case
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# benchmarks/verifiers.py would shadow the verifiers package: import the project from the root
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

MATH = {"name": "math", "options": {"fallback_last_number": True}}
#: pays 1 for any answer of 4 characters or more (sums are 2-3 digits), whatever it says: a reward biased to length
LONG = {"name": "regex", "options": {"pattern": r"^[\s\S]{4,}$", "fullmatch": False}}
#: lower-case words: an addition model never writes one, so no sample ever earns a reward
NEVER = {"name": "regex", "options": {"pattern": r"^[a-z]{3,}$", "fullmatch": True}}


@dataclass(frozen=True)
class Case:
    name: str
    expect: tuple[str, ...]  # rules that must be named (warn or error); () = healthy, nothing may warn
    stage: dict[str, Any]
    setting: str  # what was set, for the table
    verifier: dict[str, Any] = field(default_factory=lambda: MATH)
    wrong_answers: bool = False  # train on answers off by one (SFT learns them: loss falls, accuracy falls)
    train_rows: int | None = None  # keep only this many training rows (a small set to overfit)
    gate: float = 0.2


RL = {"batch_size": 16, "num_generations": 8, "max_new_tokens": 5, "temperature": 1.0, "general_mix": 0.0}
SFT = {"max_steps": 60, "batch_size": 32, "lora": "no", "weight_decay": 0.0}
DPO = {"max_steps": 100, "batch_size": 16, "lora": "no"}

CASES = (
    # healthy: sensible settings for this model
    Case("sft_healthy", (), {"kind": "sft", "lr": 5e-4, **SFT}, "sft lr 5e-4"),
    Case("psft_healthy", (), {"kind": "psft", "lr": 5e-4, **SFT}, "psft lr 5e-4"),
    Case("dpo_healthy", (), {"kind": "dpo", "lr": 5e-4, "beta": 0.1, **DPO}, "dpo beta 0.1, lr 5e-4"),
    Case(
        "grpo_healthy",
        (),
        {"kind": "grpo", "lr": 2e-4, "beta": 0.04, "max_steps": 40, **RL},
        "grpo beta 0.04, lr 2e-4",
    ),
    Case(
        "rloo_healthy",
        (),
        {"kind": "rloo", "lr": 2e-4, "beta": 0.04, "max_steps": 40, **RL},
        "rloo beta 0.04, lr 2e-4",
    ),
    Case(
        "reward_model_healthy",
        (),
        {"kind": "reward_model", "lr": 1e-4, "max_steps": 60, "batch_size": 16, "lora": "no"},
        "reward_model lr 1e-4",
    ),
    # induced failures
    Case(
        "sft_lr_far_too_high",
        ("loss_spikes", "loss_diverges", "repetition"),
        {"kind": "sft", "lr": 5e-2, **SFT},
        "sft lr 5e-2 (100x)",
    ),
    Case(
        "sft_wrong_answers",
        ("loss_vs_score",),
        {"kind": "sft", "lr": 1e-5, **{**SFT, "max_steps": 160}},
        "sft lr 1e-5 on off-by-one answers",
        wrong_answers=True,
    ),
    Case("dpo_beta_low", ("dpo_beta_too_low",), {"kind": "dpo", "lr": 5e-4, "beta": 0.01, **DPO}, "dpo beta 0.01"),
    Case("dpo_beta_high", ("dpo_beta_too_high",), {"kind": "dpo", "lr": 5e-4, "beta": 5.0, **DPO}, "dpo beta 5"),
    Case(
        "grpo_no_kl_high_lr",
        ("entropy_collapse", "repetition"),
        {"kind": "grpo", "lr": 1e-2, "beta": 0.0, "max_steps": 40, **RL},
        "grpo beta 0, lr 1e-2",
    ),
    Case(
        "grpo_weak_kl_high_lr",
        ("kl_too_weak",),
        {"kind": "grpo", "lr": 1e-3, "beta": 0.001, "max_steps": 40, **RL},
        "grpo beta 0.001, lr 1e-3",
    ),
    Case(
        "grpo_kl_too_strong",
        ("kl_too_strong",),
        {"kind": "grpo", "lr": 1e-6, "beta": 5.0, "max_steps": 40, **RL},
        "grpo beta 5, lr 1e-6",
    ),
    Case(
        "grpo_length_reward",
        ("length_drift",),
        {"kind": "grpo", "lr": 1e-3, "beta": 0.0, "max_steps": 60, **{**RL, "max_new_tokens": 12, "temperature": 1.5}},
        "reward: any answer >= 4 chars, T 1.5",
        verifier=LONG,
        gate=0.0,
    ),
    Case(
        "grpo_no_success",
        ("reward_never_rises",),
        {"kind": "grpo", "lr": 2e-4, "beta": 0.04, "max_steps": 20, **RL},
        "reward: no sample can pass",
        verifier=NEVER,
        gate=0.0,
    ),
)


def student(cache: Path) -> Path:
    """The demo's student (built once, cached), and the demo's data splits."""
    from rich.console import Console

    from advisor.demo import DemoConfig, build_models, make_data

    cfg = DemoConfig()
    return build_models(cache, cfg, make_data(cfg), Console(stderr=True), names=("student",))["student"]


def write_data(folder: Path, seed: int, wrong: bool, train_rows: int | None = None) -> None:
    import random

    from advisor.demo import DemoConfig, make_data
    from pipelines.artifacts import write_jsonl

    data = make_data(DemoConfig())
    rng = random.Random(seed)
    train = list(data["train"])
    rng.shuffle(train)
    rows = []
    for r in train:
        answer = str(int(r["answer"]) + 1) if wrong else r["answer"]
        rejected = str(int(r["answer"]) + rng.choice([-10, -1, 1, 10]))
        rows.append({"question": r["prompt"], "answer": answer, "chosen": r["answer"], "rejected": rejected})
    write_jsonl(folder / "train.jsonl", rows[:train_rows] if train_rows else rows)
    for split in ("validation", "eval"):
        write_jsonl(folder / f"{split}.jsonl", [{"question": r["prompt"], "answer": r["answer"]} for r in data[split]])


def plan_for(case: Case, model: Path, seed: int) -> dict[str, Any]:
    probe = {
        "kind": "probe",
        "samples": 4,
        "max_new_tokens": 5,
        "prompt_template": "{{ question }}",
        "prompt_style": "direct",
        "gate": case.gate,
        "seed": seed,
    }
    return {
        "name": case.name.replace("_", "-"),
        "task": {"kind": "math"},
        "answers": {"labeled_rows": 500, "verifiable": True, "cot_helps": "no"},
        "route": "sft",
        "models": {"base": str(model), "chat": False},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "validation": "validation.jsonl"},
        "verifier": case.verifier,
        "stages": [probe, {**case.stage, "seed": seed}],
    }


def run_case(case: Case, model: Path, out: Path, seed: int) -> dict[str, Any]:
    from rich.console import Console

    from advisor.runner import run_plan
    from pipelines.doctor import diagnose

    folder = out / case.name
    write_data(folder, seed, case.wrong_answers, case.train_rows)
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan_for(case, model, seed), sort_keys=False))
    started = time.time()
    run_plan(folder / "plan.yaml", run_dir=folder / "run", console=Console(stderr=True, quiet=True))
    seconds = time.time() - started
    findings = diagnose(folder / "run")
    named = sorted({f.rule for f in findings if f.severity in ("warn", "error")})
    if case.expect:
        ok = any(rule in named for rule in case.expect)
    else:
        ok = not named
    return {
        "case": case.name,
        "setting": case.setting,
        "expect": case.expect,
        "named": named,
        "ok": ok,
        "seconds": round(seconds, 1),
        "findings": [f.to_dict() for f in findings],
    }


def table(results: list[dict[str, Any]], seed: int, load: str) -> str:
    lines = [
        f"Seed {seed}; load average at the start {load}. Command: "
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_induced.py --seed {seed}`",
        "",
        "| case | setting | expected | doctor named (warn/error) | first finding's evidence | ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        # the expected rule's evidence when it was named, else the first warning's
        wanted = [f for f in r["findings"] if f["rule"] in r["expect"] and f["rule"] in r["named"]]
        first = next(iter(wanted), None) or next((f for f in r["findings"] if f["rule"] in r["named"]), None)
        evidence = first["evidence"]["summary"] if first else "—"
        expect = ", ".join(r["expect"]) or "nothing (healthy)"
        named = ", ".join(r["named"]) or "nothing"
        lines.append(
            f"| {r['case']} | {r['setting']} | {expect} | {named} | {evidence} | {'yes' if r['ok'] else 'NO'} |"
        )
    passed = sum(r["ok"] for r in results)
    lines += ["", f"{passed}/{len(results)} cases as expected."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/advisor-doctor-induced"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/advisor-doctor-induced/models"))
    parser.add_argument("--only", nargs="*", help="case names")
    parser.add_argument("--write", type=Path, help="write the Markdown table here")
    args = parser.parse_args()
    load = "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    model = student(args.cache)
    out = args.out / f"seed{args.seed}"
    results = []
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        result = run_case(case, model, out, args.seed)
        results.append(result)
        print(
            f"{case.name:24s} {'ok' if result['ok'] else 'MISS'}  named {result['named']}  ({result['seconds']}s)",
            flush=True,
        )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results, args.seed, load)
    print(text)
    if args.write:
        args.write.write_text(
            "# `advisor doctor` on induced failures and healthy runs\n\n"
            "Produced by `benchmarks/doctor_induced.py` (its docstring says how the runs are made).\n\n" + text
        )


if __name__ == "__main__":
    main()
