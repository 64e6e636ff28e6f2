"""``advisor demo``: each route of the flowchart run end to end, offline, with its gain measured.

One module per route, each building its own tiny models and data, answering the
questionnaire so the flowchart picks that route (the path is printed), running the
pipeline, then a control a sceptic would ask for:

- ``rft`` (default): verified rejection sampling + SFT; control: the same loop on
  unverified samples.
- ``sft``: SFT on plentiful gold answers; control: the route not chosen (rft) on the
  same budget, so the advice itself is tested.
- ``rlhf-dpo``: DPO on preference pairs; control: SFT on the chosen replies only.
- ``rlhf-rm``: a reward model, then GRPO against it; control: the same GRPO run with the
  reward model's scores shuffled within each group.

The RLHF demos share :mod:`advisor.demos.support`: a hidden rule (greets by name,
apologises for a complaint, never shouts, stays short) makes the preferences and the
judge's training data; the gain is reported as the pipeline's judge measured it and as
the hidden rule does. ``common`` has what all share (run a plan, headline figures, the
``demo-result.json`` and ``report.html`` writers); ``smollm2`` probes a real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROUTES = ("rft", "sft", "rlhf-dpo", "rlhf-rm")


def run_route(
    route: str, out: Path, cache: Path | None = None, console: Any = None
) -> tuple[dict[str, Any], list[str]]:
    """Run the demo of ``route``; return its summary and the lines to print."""
    if route == "rft":
        from advisor.demos import rft as module
    elif route == "sft":
        from advisor.demos import sft as module
    elif route == "rlhf-dpo":
        from advisor.demos import rlhf_dpo as module
    elif route == "rlhf-rm":
        from advisor.demos import rlhf_rm as module
    else:
        raise ValueError(f"unknown route {route!r}: choose one of {', '.join(ROUTES)}")
    summary = module.run_demo(out, cache=cache, console=console)
    return summary, summary["lines"]
