"""Findings and the small helpers every rule uses: windows over a curve, evidence, fixes as settings.

A :class:`Finding` is what the doctor reports; :func:`change` turns a factor into a concrete
setting from the run's own hyperparameters ("beta 0.1 -> 0.05"), and :func:`missing` is the
"not enough data" finding a rule returns when its metrics were not logged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.doctor.history import History

#: Points a curve needs before a rule compares its start and its end.
MIN_POINTS = 4
#: A reward that moves less than this (first vs last quarter) is flat.
REWARD_FLAT = 0.03


@dataclass
class Finding:
    rule: str
    severity: str  # info, warn, error
    stage: str
    title: str
    evidence: dict[str, Any]  # metric, steps [first, last], values, summary (one line)
    cause: str
    fix: str
    not_enough_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    name: str
    kinds: tuple[str, ...]
    check: Callable[[History], Finding | None]
    doc: str = field(default="")


# ---- small helpers ----


def num(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def windows(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of the points (at least one point each)."""
    n = max(1, len(points) // 4)
    first = [v for _, v in points[:n]]
    last = [v for _, v in points[-n:]]
    return sum(first) / len(first), sum(last) / len(last)


def evidence(metric: str, points: list[tuple[float, float]], summary: str, **values: Any) -> dict[str, Any]:
    steps = [int(points[0][0]), int(points[-1][0])] if points else []
    return {"metric": metric, "steps": steps, "values": values, "summary": summary}


def change(h: History, key: str, factor: float, label: str | None = None) -> str:
    """``"beta 0.1 -> 0.05"`` from the run's hyperparameters (or the direction, when unknown)."""
    name = label or key
    value = h.hyper.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return f"{name} {num(value)} -> {num(value * factor)}"
    verb = "raise" if factor > 1 else "lower"
    return f"{verb} {name} about {num(factor if factor > 1 else 1 / factor)}x (its value is not in this log)"


def finding(h: History, rule: str, severity: str, title: str, ev: dict[str, Any], cause: str, fix: str) -> Finding:
    return Finding(rule, severity, h.stage, title, ev, cause, fix)


def missing(h: History, rule: str, needs: str) -> Finding:
    """The rule applies here but its metrics were not logged: say so, do not guess."""
    ev = {"metric": needs, "steps": [], "values": {}, "summary": f"not enough data: needs {needs}"}
    return Finding(rule, "info", h.stage, f"{rule}: not enough data", ev, "", "", not_enough_data=True)


def enough(points: list[tuple[float, float]]) -> bool:
    return len(points) >= MIN_POINTS


def rose(points: list[tuple[float, float]]) -> bool:
    """The last quarter's mean is above the first's by more than the noise (two standard errors)."""
    n = max(2, len(points) // 4)
    first, last = [v for _, v in points[:n]], [v for _, v in points[-n:]]
    spread = statistics.pstdev(first + last)
    return statistics.fmean(last) - statistics.fmean(first) > max(REWARD_FLAT, 2 * spread * math.sqrt(2 / n))
