"""The demo as it was importable before it became a package (:mod:`advisor.demos`).

The rft demo's names come from :mod:`advisor.demos.rft`; anything else (the SmolLM2
probe) is looked up in :mod:`advisor.demos.smollm2` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from advisor.demos.rft import DemoConfig, build_models, demo_plan, describe, make_data, run_demo, write_inputs

__all__ = ["DemoConfig", "build_models", "demo_plan", "describe", "make_data", "run_demo", "write_inputs"]


def __getattr__(name: str) -> Any:
    module = importlib.import_module("advisor.demos.smollm2")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'advisor.demo' has no attribute {name!r}") from None
