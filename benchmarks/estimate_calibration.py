"""``advisor estimate`` against measured runs on this machine: fit on some, report on others.

Each measured stage is a finished stage folder (its ``manifest.json`` holds the seconds it
took). The estimate for it is computed from the plan alone, as ``advisor estimate`` would
before the run. Two sets, never mixed:

- **calibration** (``--fit``): least squares of the measured seconds on the estimate's work
  counts (model loads, decoding steps, optimizer steps, FLOPs) gives the CPU constants in
  ``advisor/costs.py``;
- **validation**: every other run; the table reports estimate / measured for each stage.

Run, on an idle machine (a loaded one stretches every stage: the runs behind the committed table
were made one at a time)::

    advisor demo --out /tmp/demo-idle                                    # demo and its control run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_induced.py --seed 0 --out /tmp/dind0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/doctor_induced.py --seed 10 --out /tmp/dind10   # and 3, 8, 9, 11
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/estimate_calibration.py --measure-smollm2 /tmp/smol-idle
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/estimate_calibration.py \\
        --fit /tmp/demo-idle:demo /tmp/dind0/seed0@train /tmp/smol-idle/smollm2-sft \\
        --check /tmp/demo-idle:demo-control /tmp/smol-idle/smollm2-check /tmp/dind3/seed3@train \\
            /tmp/dind8/seed8@train /tmp/dind9/seed9@train /tmp/dind10/seed10@train /tmp/dind11/seed11@train \\
        --write benchmarks/estimate.md

``DIR@train`` keeps only the training stages: the doctor benchmark runs every plan in one
process, so its probes find the model and libraries loaded (an ``advisor run`` pays for
them in its first stage). A folder argument is a demo output (``DIR:RUN`` reads ``DIR/plan.yaml`` or
``DIR/plan-control.yaml`` with ``DIR/runs/RUN``), or a folder whose subfolders each hold
``plan.yaml`` and ``run/`` (the doctor benchmark's layout and ``--measure-smollm2``'s).
``--measure-smollm2 DIR`` first makes a measured run on a real pretrained model
(SmolLM2-135M-Instruct, converted by ``advisor demo --model smollm2``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/verifiers.py would shadow the verifiers package: import the project from the root
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]


def runs_in(arg: str) -> list[tuple[Path, Path, str, bool]]:
    """(plan file, run dir, label, training stages only) for a command-line argument."""
    arg, _, only = arg.partition("@")
    return [(*run, only == "train") for run in _runs(arg)]


def _runs(arg: str) -> list[tuple[Path, Path, str]]:
    if ":" in arg:
        folder, run = arg.split(":", 1)
        plan = Path(folder) / ("plan-control.yaml" if run.endswith("control") else "plan.yaml")
        return [(plan, Path(folder) / "runs" / run, f"demo/{run}")]
    root = Path(arg)
    if (root / "run").is_dir():
        return [(root / "plan.yaml", root / "run", f"{root.parent.name}/{root.name}")]
    return [
        (d / "plan.yaml", d / "run", f"{root.name}/{d.name}") for d in sorted(root.iterdir()) if (d / "run").is_dir()
    ]


def measured_stages(plan_file: Path, run_dir: Path, label: str, train_only: bool = False) -> list[dict[str, Any]]:
    """One row per finished stage: the estimate (from the plan alone) and the measured seconds."""
    from advisor.estimate import estimate_plan
    from advisor.validate import load_plan

    plan = load_plan(plan_file)
    estimate = estimate_plan(plan, plan_file.resolve().parent)
    rows = []
    for s in estimate.stages:
        if train_only and s.kind not in KINDS:
            continue
        manifest = run_dir / s.stage / "manifest.json"
        if not manifest.exists():
            continue
        seconds = json.loads(manifest.read_text()).get("seconds")
        if not seconds:
            continue
        rows.append({"run": label, "stage": s.stage, "kind": s.kind, "estimate": s.seconds, "measured": seconds,
                     "work": s.work, "parameters": s.parameters})  # fmt: skip
    return rows


KINDS = ("sft", "psft", "dpo", "grpo", "rloo", "reward_model")


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Least squares in relative error, each model size weighted alike: seconds ~ start + L*loads
    + V*samples + D*decode_steps + S[kind]*steps + flops/F + decode_flops/F_decode (the estimate's
    work counts; see advisor/costs.py)."""
    import numpy as np

    keys = ("start", "loads", "samples", "decode_steps", *(f"steps_{k}" for k in KINDS), "flops", "decode_flops")
    x = np.array([[r["work"].get(k, 0.0) for k in keys] for r in rows], dtype=float)
    y = np.array([r["measured"] for r in rows], dtype=float)
    used = x.any(axis=0)  # a kind with no calibration stage keeps its current constant
    # Relative error, and every model size counts alike: the tiny models' many short stages
    # would otherwise outvote the real model's few, and the FLOP rates would be fitted to
    # stages where FLOPs hardly matter (a 1M-parameter model's time is mostly per-step overhead).
    sizes = [r["parameters"] for r in rows]
    weights = 1 / (y * np.sqrt([sizes.count(size) for size in sizes]))  # squared: 1 / count per size
    coef = np.zeros(len(keys))
    while used.any():  # non-negative least squares by elimination: a negative cost means "not needed"
        coef[:] = 0
        coef[used], *_ = np.linalg.lstsq(x[:, used] * weights[:, None], y * weights, rcond=None)
        if (coef[used] >= 0).all():
            break
        used[np.argmin(np.where(used, coef, np.inf))] = False
    c = dict(zip(keys, coef, strict=True))
    return {
        "CPU_START_SECONDS": round(float(c["start"]), 3),
        "CPU_SAMPLE_SECONDS": round(float(c["samples"]), 5),
        "CPU_LOAD_SECONDS": round(float(c["loads"]), 4),
        "CPU_DECODE_OVERHEAD": round(float(c["decode_steps"]), 5),
        "CPU_STEP_OVERHEAD": {k: round(float(c[f"steps_{k}"]), 4) for k in KINDS if used[keys.index(f"steps_{k}")]},
        "CPU_FLOPS_PER_THREAD": float(f"{1 / c['flops']:.3g}") if c["flops"] > 0 else None,
        "CPU_DECODE_FLOPS_PER_THREAD": float(f"{1 / c['decode_flops']:.3g}") if c["decode_flops"] > 0 else None,
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | stage | estimate (s) | measured (s) | ratio | within 2x |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["estimate"] / r["measured"]
        ok = 0.5 <= ratio <= 2
        lines.append(f"| {r['run']} | {r['stage']} | {r['estimate']:.1f} | {r['measured']:.1f} | {ratio:.2f} | "
                     f"{'yes' if ok else 'NO'} |")  # fmt: skip
    within = sum(0.5 <= r["estimate"] / r["measured"] <= 2 for r in rows)
    lines += ["", f"{within}/{len(rows)} stages within 2x."]
    return lines


#: Two differently sized runs on the real model: one to calibrate on, one to check against.
SMOLLM2_RUNS = {
    "smollm2-sft": {"samples": 4, "max_new_tokens": 16, "batch_size": 8, "max_steps": 6, "prompts": 40},
    "smollm2-check": {"samples": 8, "max_new_tokens": 8, "batch_size": 4, "max_steps": 8, "prompts": 56},
}


def same_work(a: str, b: str) -> list[str]:
    """The same plans run twice (other seeds, other load on the machine): measured B / measured A."""
    runs = {
        (r["run"].split("/")[-1], r["stage"]): r for arg in (a,) for run in runs_in(arg) for r in measured_stages(*run)
    }
    lines = [
        "### The same work at two times (the machine is shared: its load moves every time)",
        "",
        f"| case | stage | measured in {Path(a).name} (s) | measured in {Path(b).name} (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for run in runs_in(b):
        for r in measured_stages(*run):
            other = runs.get((r["run"].split("/")[-1], r["stage"]))
            if other:
                lines.append(
                    f"| {r['run'].split('/')[-1]} | {r['stage']} | {other['measured']:.1f} | {r['measured']:.1f} | "
                    f"{r['measured'] / other['measured']:.2f} |"
                )
    return lines


def measure_smollm2(out: Path, cache: Path, name: str) -> None:
    """A measured probe + SFT on SmolLM2-135M-Instruct (a real pretrained model), plan and run in ``out/name``."""
    import yaml
    from rich.console import Console

    from advisor.demo import smollm2_model
    from advisor.runner import run_plan
    from pipelines.artifacts import write_jsonl
    from pipelines.testing.tinymodel import addition_task

    model = smollm2_model(cache, Console(stderr=True))
    size = SMOLLM2_RUNS[name]
    folder = out / name
    rows = [
        {"question": f"What is {r['prompt'][:-1]}?", "answer": r["answer"]} for r in addition_task(size["prompts"], 3)
    ]
    write_jsonl(folder / "train.jsonl", rows[:24])
    write_jsonl(folder / "eval.jsonl", rows[24:])
    template = "{{ question }} Reply with only the number."
    sampling = {"max_new_tokens": size["max_new_tokens"], "prompt_template": template, "shard_size": 20}
    plan = {
        "name": name,
        "task": {"kind": "math"},
        "answers": {"labeled_rows": 500, "verifiable": True, "cot_helps": "no"},
        "route": "sft",
        "models": {"base": str(model)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "verifier": {"name": "math", "options": {"fallback_last_number": True}},
        "stages": [
            {
                "kind": "probe",
                "samples": size["samples"],
                "temperature": 0.7,
                "prompt_style": "direct",
                "gate": 0.0,
                **sampling,
            },  # fmt: skip
            {"kind": "sft", "lr": 1e-5, "max_steps": size["max_steps"], "batch_size": size["batch_size"], "lora": "no"},
        ],
    }
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    run_plan(folder / "plan.yaml", run_dir=folder / "run", console=Console(stderr=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", nargs="*", default=[], help="calibration runs")
    parser.add_argument("--check", nargs="*", default=[], help="validation runs")
    parser.add_argument("--measure-smollm2", type=Path, help="first make the measured SmolLM2 runs in this folder")
    parser.add_argument("--smollm2-runs", nargs="*", default=list(SMOLLM2_RUNS), help="which of them")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/smol/cache"))
    parser.add_argument(
        "--same-work", nargs=2, metavar=("A", "B"), help="two runs of the same plans: how load moves time"
    )
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    load = "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    if args.measure_smollm2:
        for name in args.smollm2_runs:
            measure_smollm2(args.measure_smollm2, args.cache, name)
    fitted = [r for a in args.fit for run in runs_in(a) for r in measured_stages(*run)]
    checked = [r for a in args.check for run in runs_in(a) for r in measured_stages(*run)]
    lines = [f"Load average when the table was made: {load}.", ""]
    if fitted:
        constants = fit(fitted)
        lines += ["Constants fitted on the calibration runs (least squares, relative error):", ""]
        lines += [f"- `{k} = {v}`" for k, v in constants.items()]
        lines += ["", "### Calibration runs (the fit's own data)", "", *table(fitted), ""]
    if checked:
        lines += ["### Validation runs (not used to fit)", "", *table(checked)]
    if args.same_work:
        lines += ["", *same_work(*args.same_work)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(
            "# `advisor estimate` against measured runs on this machine\n\n"
            "Produced by `benchmarks/estimate_calibration.py` (its docstring has the command).\n\n" + text
        )


if __name__ == "__main__":
    main()
