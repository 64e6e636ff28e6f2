"""The stages of a pipeline, and the one table that says which exist.

Each stage is a module here with ``run(ctx: StageContext) -> StageResult`` that reads
top to bottom: load inputs, generate, verify, write. The table below is the only
place a kind of stage is named: the plan's stage kinds, the runner's loader, the
route settling and ``advisor explain``'s knobs all derive from it. This module
imports nothing of the project, so the plan schema can read it.

To add a kind: a row in ``STAGES``, its options model in ``advisor/plan.py`` (the
registry test checks they agree), and its module here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageKind:
    """One kind of stage: where it lives and how the rest of the app treats it."""

    kind: str
    module: str
    trains_policy: bool = False  # its ``model/`` becomes the policy later stages sample from
    trains: bool = False  # a training stage (the policy or a reward model)
    rft_only: bool = False  # dropped when a probe settles the route to sft
    knobs: tuple[str, ...] = ()  # the options ``advisor explain`` and the plan README show


STAGES: dict[str, StageKind] = {
    s.kind: s
    for s in (
        StageKind("probe", "pipelines.stages.probe", knobs=("gate", "samples", "prompt_style")),
        StageKind(
            "synthesize",
            "pipelines.stages.synthesize",
            rft_only=True,
            knobs=("samples", "aggregation", "require_verifier"),
        ),
        StageKind(
            "rejection_sample",
            "pipelines.stages.rejection_sample",
            rft_only=True,
            knobs=("samples", "max_per_prompt", "dedupe"),
        ),
        StageKind("sft", "pipelines.stages.train", True, True, knobs=("lr", "weight_decay", "epochs", "lora")),
        StageKind("psft", "pipelines.stages.train", True, True, knobs=("lr", "epsilon", "refresh_every")),
        StageKind("dpo", "pipelines.stages.train", True, True, knobs=("lr", "beta", "loss_type")),
        StageKind("grpo", "pipelines.stages.train", True, True, knobs=("lr", "beta", "num_generations", "reward")),
        StageKind("rloo", "pipelines.stages.train", True, True, knobs=("lr", "beta", "num_generations", "reward")),
        StageKind("reward_model", "pipelines.stages.train", trains=True, knobs=("lr", "epochs")),
        StageKind("evaluate", "pipelines.stages.evaluate"),
    )
}

STAGE_KINDS: tuple[str, ...] = tuple(STAGES)
#: Stages whose ``model/`` is the improved policy.
POLICY_KINDS: tuple[str, ...] = tuple(k for k, s in STAGES.items() if s.trains_policy)
#: Every training stage (the policy's and the reward model's).
TRAIN_KINDS: tuple[str, ...] = tuple(k for k, s in STAGES.items() if s.trains)
RFT_ONLY: tuple[str, ...] = tuple(k for k, s in STAGES.items() if s.rft_only)


def load(kind: str) -> Callable[[Any], Any]:
    """The ``run`` function of a stage kind (imports its module, and so its libraries)."""
    return importlib.import_module(STAGES[kind].module).run
