"""The doctor: diagnose a training run from its logged history.

Practitioners' diagnoses (KNOWLEDGE.md section 5: KL too weak or too strong, mode
collapse, length drift, entropy collapse, a reward that never rises, loss spikes, DPO
beta too high or too low, loss falling while accuracy falls) as rules over the curves a
run logged. Each finding gives its evidence (metric, step range, values), the likely
cause, the fix as a concrete setting ("beta 0.1 -> 0.05") and a severity (info, warn,
error). Every training stage runs it on its own history and stores the findings in its
``metrics.json`` (``doctor``); ``advisor doctor PATH`` runs it on any run, advisor's or
a plain TRL output directory.

- ``history.py``: reading histories (stage folder, run directory, ``trainer_state.json``)
  and the distinct-n statistics training logs;
- ``rules.py``: the rules, one function each, and their thresholds;
- ``findings.py``: :class:`Finding` and the helpers the rules share (windows, evidence, fixes).

Example::

    from pipelines.doctor import diagnose
    for f in diagnose(Path("runs/gsm/04-grpo")):
        print(f.severity, f.rule, f.evidence["summary"], "->", f.fix)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.doctor.findings import Finding
from pipelines.doctor.history import History, diversity, from_metrics, load_histories
from pipelines.doctor.rules import RULES

__all__ = [
    "RULES",
    "Finding",
    "History",
    "diagnose",
    "diagnose_history",
    "diagnose_stage",
    "diversity",
    "load_histories",
    "summary",
]

SEVERITY_ORDER = {"error": 0, "warn": 1, "info": 2}


def diagnose_history(history: History) -> list[Finding]:
    """Every rule that applies to the history's kind; errors first, "not enough data" last."""
    found = []
    for rule in RULES:
        if history.kind in rule.kinds:
            result = rule.check(history)
            if result is not None:
                found.append(result)
    return sorted(found, key=lambda f: (f.not_enough_data, SEVERITY_ORDER[f.severity]))


def diagnose(path: Path) -> list[Finding]:
    """Findings for every training history at ``path`` (see :func:`load_histories`).

    Raises:
        InputError: no usable history at ``path``.
    """
    return [f for h in load_histories(Path(path)) for f in diagnose_history(h)]


def diagnose_stage(metrics: dict[str, Any], stage_dir: Path) -> list[dict[str, Any]]:
    """What a training stage stores as ``metrics["doctor"]``: its findings on its own history
    (rules without the data they need left out), as plain dicts."""
    history = from_metrics(metrics, stage_dir.name, stage_dir / "metrics.json", stage_dir.parent)
    return [f.to_dict() for f in diagnose_history(history) if not f.not_enough_data]


def summary(findings: list[Finding]) -> dict[str, Any]:
    """Counts by severity, and the rules that had too little data."""
    counts = {s: sum(1 for f in findings if f.severity == s and not f.not_enough_data) for s in SEVERITY_ORDER}
    return {**counts, "not_enough_data": sorted({f.rule for f in findings if f.not_enough_data})}
