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
