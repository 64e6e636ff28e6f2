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
    return rlhf.run_route(
        out,
        cache,
        console,
        cfg or DpoDemoConfig(),
        plans,
        route="rlhf-dpo",
        run_name="demo-dpo",
        titles=("DPO on the preference pairs", "SFT on the chosen replies only"),
        labels=("DPO", "control: SFT on chosen", "SFT on the chosen replies only"),
    )
