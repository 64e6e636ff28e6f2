"""Helpers shared by the tests that drive ``advisor`` through its real CLI."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from advisor.cli import main


def run_cli(*args, cwd: Path):
    """``advisor ARGS`` from ``cwd`` (relative paths in plans resolve as a user's shell would)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


def run_plan_cli(plan: Path, cwd: Path):
    """``advisor run PLAN`` from ``cwd``."""
    return run_cli("run", plan, cwd=cwd)


def write_plan(folder: Path, keep: tuple[str, ...] | None = None, stage: dict | None = None, **answers) -> Path:
    """``folder/plan.yaml`` as ``advisor plan`` would write it for ``answers`` (PlanAnswers fields).

    ``keep`` lists the stage kinds to keep (default: all); ``stage`` updates the first kept stage's options.
    """
    import yaml

    from advisor.plan import plan_to_dict
    from advisor.planner import PlanAnswers, build_plan

    data = plan_to_dict(build_plan(PlanAnswers(**answers)))
    if keep is not None:
        data["stages"] = [s for s in data["stages"] if s["kind"] in keep]
    data["stages"][0].update(stage or {})
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
