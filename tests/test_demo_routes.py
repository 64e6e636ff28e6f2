"""``advisor demo --route R`` for every flowchart leaf, reduced to fit CI (slow: trains tiny models).

Each reduced demo must print the route it was asked for, write report.html, and write a
demo-result.json with every key and a control of the same shape. The full demos' figures
are in benchmarks/demo.md; these sizes are too small to show a gain, only to run it all.
"""

from __future__ import annotations

import html
import json

import pytest
from rich.console import Console

from advisor.demos.common import RESULT_KEYS
from advisor.demos.rft import DemoConfig
from advisor.demos.support import WorldConfig

TINY_STUDENT = DemoConfig(
    pretrain_rows=800, student_max_steps=50, eval_prompts=20, validation_prompts=16, train_prompts=60
)
TINY_WORLD = WorldConfig(
    base_rows=400, base_steps=40, judge_rows=400, judge_steps=80, train_prompts=16, eval_prompts=8, validation_prompts=8
)
FIGURES = ("before", "after", "difference", "difference_ci95")


def reduced(route: str):
    if route == "sft":
        from advisor.demos.sft import SftDemoConfig, run_demo

        return run_demo, SftDemoConfig(
            models=TINY_STUDENT, labeled_rows=120, sft_steps=4, samples=2, control_samples=2, gate=0.0
        )
    if route == "rlhf-dpo":
        from advisor.demos.rlhf_dpo import DpoDemoConfig, run_demo

        return run_demo, DpoDemoConfig(world=TINY_WORLD, steps=4, batch_size=4, samples=2, gate=0.0)
    from advisor.demos.rlhf_rm import RmDemoConfig, run_demo

    return run_demo, RmDemoConfig(
        world=TINY_WORLD, samples=2, rm_steps=4, grpo_steps=2, generations=2, batch_size=4, gate=0.0
    )


@pytest.mark.slow
@pytest.mark.parametrize("route", ["sft", "rlhf-dpo", "rlhf-rm"])
def test_reduced_route_demo_end_to_end(tmp_path, capsys, route):
    run_demo, cfg = reduced(route)
    run_demo(tmp_path / route, console=Console(quiet=True), cfg=cfg)
    printed = capsys.readouterr().out
    expected = "rlhf" if route.startswith("rlhf") else route
    assert f"route: {expected}" in printed, "the flowchart's path and route are printed"
    saved = json.loads((tmp_path / route / "demo-result.json").read_text())
    assert saved["route"] == route and all(k in saved for k in RESULT_KEYS), saved.keys()
    assert all(k in saved["control"] for k in FIGURES), "the control has the same figures"
    page = (tmp_path / route / "report.html").read_text()
    assert html.escape(saved["lines"][0]) in page, "report.html shows the figures"
    if route.startswith("rlhf"):
        assert all(k in saved["judge"] for k in FIGURES), "the gain is also counted by the pipeline's judge"
        assert isinstance(saved["reward_hacking"], bool)
