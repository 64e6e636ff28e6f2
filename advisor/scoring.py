"""``advisor verify``: score a JSONL or Parquet file with a verifier, with a summary.

>>> summarize([])["rows"]
0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from advisor.errors import InputError


def score_rows(
    verifier: Any,
    rows: list[dict[str, Any]],
    response_field: str,
    reference_field: str,
    workers: int | None,
    advance: Callable[[int], None] = lambda n: None,
    chunk: int = 64,
) -> list[Any]:
    for i, row in enumerate(rows):
        if response_field not in row:
            raise InputError(f"row {i + 1}: no field {response_field!r} (fields: {', '.join(row)})")
    verdicts: list[Any] = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        responses = [str(r[response_field]) if r[response_field] is not None else "" for r in part]
        references = [r.get(reference_field) for r in part]
        verdicts.extend(verifier.verify_batch(responses, references, workers=workers))
        advance(len(part))
    return verdicts


def summarize(verdicts: list[Any]) -> dict[str, Any]:
    statuses = Counter(v.status for v in verdicts)
    graded = [v for v in verdicts if v.gradable]
    passed = sum(1 for v in graded if v.passed)
    return {
        "rows": len(verdicts),
        "graded": len(graded),
        "passed": passed,
        "pass_rate": passed / len(graded) if graded else 0.0,
        "by_status": dict(statuses.most_common()),
    }
