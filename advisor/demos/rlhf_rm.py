"""``advisor demo --route rlhf-rm``: no preference pairs, so a reward model, then GRPO.

1. **Models.** The support world's base policy and judge (shared with ``rlhf-dpo``).
2. **Plan.** No ground truth, not verifiable, no preference pairs: the flowchart picks
   RLHF with a reward model and online RL; the path is printed.
3. **Pipeline.** probe; rejection_sample (the judge grades the base's own replies, and a
   passing and a failing reply per message become pairs); ``reward_model`` on those pairs;
   ``grpo`` with the reward model as its reward; evaluate with the *judge*, not the reward
   model being optimised, so reward hacking would show.
4. **Control.** The same GRPO run with the reward model's scores shuffled within each
   group (same numbers, no signal); the earlier stages are reused, not rerun.

The gain is counted by the pipeline's judge and by the hidden rule (:mod:`advisor.demos.rlhf`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.demos import rlhf
from advisor.demos import support as world


@dataclass(frozen=True)
class RmDemoConfig:
    world: world.WorldConfig = field(default_factory=world.WorldConfig)
    samples: int = 4
    gate: float = 0.2  # the probe's gate (reduced test runs lower it: their tiny models are weaker)
    rm_steps: int = 60
    rm_lr: float = 1e-3
    grpo_steps: int = 40
    grpo_lr: float = 3e-4
    generations: int = 4
    batch_size: int = 16

    @property
    def seed(self) -> int:
        return self.world.seed


def plans(models: dict[str, Path], cfg: RmDemoConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    options = {
        "probe": {"samples": cfg.samples, "gate": cfg.gate},
        "rejection_sample": {"samples": cfg.samples},
        "reward_model": {"lr": cfg.rm_lr, "max_steps": cfg.rm_steps, "batch_size": cfg.batch_size},
        "grpo": {
            "lr": cfg.grpo_lr,
            "max_steps": cfg.grpo_steps,
            "batch_size": cfg.batch_size,
            "num_generations": cfg.generations,
            "max_new_tokens": 32,
            "general_mix": 0.0,
        },
    }
    plan = rlhf.rlhf_plan(models, "demo-rm", False, options)
    control = rlhf.rlhf_plan(models, "demo-rm-control", False, options)
    for stage in control["stages"]:
        if stage["kind"] == "grpo":
            stage["reward_shuffle"] = True
    return plan, control


def share_stages(runs: Path, plan_data: dict[str, Any]) -> None:
    """probe, rejection_sample, reward_model are identical in the control, so their manifests match."""
    from advisor.plan import Plan

    for name in Plan.model_validate(plan_data).stage_dirs()[:-2]:
        target = runs / "demo-rm-control" / name
        if not target.exists():
            shutil.copytree(runs / "demo-rm" / name, target)


def run_demo(
    out: Path, cache: Path | None = None, console: Any = None, cfg: RmDemoConfig | None = None
) -> dict[str, Any]:
    return rlhf.run_route(
        out,
        cache,
        console,
        cfg or RmDemoConfig(),
        plans,
        route="rlhf-rm",
        run_name="demo-rm",
        titles=("judged samples -> reward model -> GRPO", "the same GRPO with rewards shuffled within each group"),
        labels=("reward model + GRPO", "control: shuffled", "the same GRPO, rewards shuffled within each group"),
        before_control=share_stages,
        scorer="the judge (held out: GRPO optimised the reward model)",
    )
