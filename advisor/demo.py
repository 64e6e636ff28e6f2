"""The demo, as it was importable before it became a package: see :mod:`advisor.demos`."""

from __future__ import annotations

from advisor.demos.rft import DemoConfig, build_models, demo_plan, describe, make_data, run_demo, write_inputs
from advisor.demos.smollm2 import SMOLLM2_FILE, run_smollm2_probe, smollm2_model

__all__ = [
    "SMOLLM2_FILE",
    "DemoConfig",
    "build_models",
    "demo_plan",
    "describe",
    "make_data",
    "run_demo",
    "run_smollm2_probe",
    "smollm2_model",
    "write_inputs",
]
