"""``advisor demo --route rlhf-dpo``: preference pairs, so DPO.

1. **Models.** The support world's base policy and judge (character-level, trained here,
   cached; :mod:`advisor.demos.support`).
2. **Plan.** No ground truth, not verifiable, preference pairs exist: the flowchart picks
   RLHF with DPO; the path is printed. The hidden rule wrote the pairs.
3. **Pipeline.** probe (the judge grades the base's replies), ``dpo`` with an SFT term on
   the chosen replies, evaluate (judge pass rate, win rate over the base, reply lengths).
4. **Control.** SFT on the chosen replies only, same steps: does the rejected reply of each
   pair add anything over imitating the chosen one?

The gain is counted by the pipeline's judge and by the hidden rule (:mod:`advisor.demos.rlhf`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.demos import rlhf
from advisor.demos import support as world
from advisor.demos.common import decision_path, finish, run_and_read
from advisor.planner import print_explanation


@dataclass(frozen=True)
class DpoDemoConfig:
    world: world.WorldConfig = field(default_factory=world.WorldConfig)
    steps: int = 60
    lr: float = 3e-4
    beta: float = 0.1
    batch_size: int = 16
    samples: int = 4
    gate: float = 0.2  # the probe's gate (reduced test runs lower it: their tiny models are weaker)

    @property
    def seed(self) -> int:
        return self.world.seed


def plans(models: dict[str, Path], cfg: DpoDemoConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DPO plan the flowchart writes, and the control (SFT on the chosen replies, same steps)."""
    train = {"lr": cfg.lr, "max_steps": cfg.steps, "batch_size": cfg.batch_size}
    options = {"probe": {"samples": cfg.samples, "gate": cfg.gate}, "dpo": {**train, "beta": cfg.beta}}
    plan = rlhf.rlhf_plan(models, "demo-dpo", True, options)
    control = rlhf.rlhf_plan(models, "demo-dpo-control", True, options)
    control["data"]["answer_field"] = "chosen"  # SFT on data.train's prompt -> chosen reply
    control["stages"] = [
        {"kind": "sft", **train, "lora": "no", "weight_decay": 0.0, "epochs": 1.0} if s["kind"] == "dpo" else s
        for s in control["stages"]
    ]
    return plan, control


def run_demo(
    out: Path, cache: Path | None = None, console: Any = None, cfg: DpoDemoConfig | None = None
) -> dict[str, Any]:
    from rich.console import Console

    from advisor.plan import Plan

    console = console or Console(stderr=True)
    cfg = cfg or DpoDemoConfig()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1. models (trained from scratch, offline)")
    models = world.build_world_models(cache or out / "models", cfg.world, console)
    rlhf.write_inputs(out, cfg.world)

    console.rule("2. plan (the flowchart, answered without a terminal)")
    plan_data, control_data = plans(models, cfg)
    print_explanation(Plan.model_validate(plan_data))

    console.rule("3. pipeline: DPO on the preference pairs")
    runs = out / "runs"
    metrics = run_and_read(plan_data, out / "plan.yaml", runs / "demo-dpo", console)
    console.rule("4. control: SFT on the chosen replies only")
    control = run_and_read(control_data, out / "plan-control.yaml", runs / "demo-dpo-control", console)

    n = cfg.world.eval_prompts
    summary = {
        "route": "rlhf-dpo",
        **rlhf.measured(runs / "demo-dpo", plan_data, metrics, n),
        "control": {
            "label": "SFT on the chosen replies only",
            **rlhf.measured(runs / "demo-dpo-control", control_data, control, n),
        },
        "seed": cfg.seed,
        "hidden_rule": list(world.RULES),
        "path": decision_path(plan_data),
        "run_report": str(runs / "demo-dpo" / "report.html"),
    }
    lines = rlhf.verdict_lines("DPO", summary) + rlhf.verdict_lines("control: SFT on chosen", summary["control"])
    return finish(out, summary, lines + rlhf.honest_note(summary))
