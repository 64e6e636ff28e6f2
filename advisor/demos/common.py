"""What every demo shares: running a plan, headline figures, the result file and page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipelines.artifacts import read_json, write_text


def run_and_read(plan_data: dict[str, Any], plan_file: Path, run_dir: Path, console: Any) -> dict[str, Any]:
    """Write the plan, run it, and return its last stage's metrics."""
    from advisor.plan import Plan
    from advisor.runner import run_plan

    write_text(plan_file, yaml.safe_dump(plan_data, sort_keys=False))
    run_plan(plan_file, run_dir=run_dir, console=console)
    return read_json(run_dir / Plan.model_validate(plan_data).stage_dirs()[-1] / "metrics.json")


#: The keys every demo-result.json has (the control object has the same figures).
RESULT_KEYS = ("route", "before", "after", "difference", "difference_ci95", "control", "seed")


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The evaluate stage's pass@1 before and after, and the paired difference with its interval."""
    return {
        "before": metrics["before"]["pass@1"],
        "before_ci95": metrics["before"]["pass@1_ci95"],
        "after": metrics["after"]["pass@1"],
        "after_ci95": metrics["after"]["pass@1_ci95"],
        "difference": metrics["difference"]["mean"],
        "difference_ci95": metrics["difference"]["ci95"],
    }


def rates_headline(before: list[float], after: list[float]) -> dict[str, Any]:
    """Per-prompt rates (before, after) as headline figures: means with 95% intervals, paired difference."""
    from pipelines.stats import mean_interval, paired_difference

    b, blo, bhi = mean_interval(before)
    a, alo, ahi = mean_interval(after)
    d, lo, hi = paired_difference(before, after)
    return {
        "before": b,
        "before_ci95": [blo, bhi],
        "after": a,
        "after_ci95": [alo, ahi],
        "difference": d,
        "difference_ci95": [lo, hi],
    }


def excludes_zero(figures: dict[str, Any]) -> bool:
    lo, hi = figures["difference_ci95"]
    return lo > 0 or hi < 0


def figure_line(label: str, h: dict[str, Any], metric: str = "pass@1") -> str:
    lo, hi = h["difference_ci95"]
    return (
        f"{label:28s} {metric} {h['before']:.1%} -> {h['after']:.1%}  "
        f"({h['difference']:+.1%}, 95% CI {lo:+.1%} to {hi:+.1%})"
    )


def finish(out: Path, summary: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """Write ``demo-result.json`` and the demo's ``report.html`` (its figures, then the run's report)."""
    import html

    from pipelines.artifacts import write_json

    missing = [k for k in RESULT_KEYS if k not in summary]
    assert not missing, f"demo result lacks {missing}"
    summary = {**summary, "report": str(out / "report.html"), "lines": lines}
    write_json(out / "demo-result.json", summary)
    run_report = Path(summary["run_report"])
    link = run_report.relative_to(out) if run_report.is_relative_to(out) else run_report
    body = "\n".join(f"<li>{html.escape(line)}</li>" for line in lines)
    path = "\n".join(f"<li>{html.escape(step)}</li>" for step in summary.get("path", []))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>advisor demo: {html.escape(summary["route"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
li{{font-family:ui-monospace,monospace;white-space:pre-wrap}}</style></head><body>
<h1>advisor demo: route {html.escape(summary["route"])}</h1>
<h2>the flowchart's path</h2><ul>{path}</ul>
<h2>the measured gain (seed {summary["seed"]})</h2><ul>{body}</ul>
<p>The pipeline's own report, every stage with its metrics: <a href="{html.escape(str(link))}">{html.escape(str(link))}</a></p>
</body></html>
"""
    write_text(out / "report.html", page)
    return summary


def decision_path(plan_data: dict[str, Any]) -> list[str]:
    """The flowchart's path as printed lines: question = answer: why."""
    from advisor.render import answer_text

    return [f"{s['question']} = {answer_text(s['answer'])}: {s['because']}" for s in plan_data["decision"]]
