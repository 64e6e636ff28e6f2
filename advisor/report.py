"""The run report: ``report.html`` and ``report.md`` for one run directory.

Reads whatever stage folders exist under ``runs/<plan>/`` (a run stopped at the probe
gate, or still going, gets a report that says so) and writes two files:

- ``report.html``: one self-contained page. The route and why, each stage's status
  and metrics, plots (pass@1 before/after with 95% intervals, the per-prompt
  difficulty histogram, loss/reward/KL curves, checkpoint pass rate by step) and
  sample tables (accepted and rejected, with the verifier's reason).
- ``report.md``: the same numbers and tables as text, without the plots.

Plots are small SVG charts drawn here and embedded as ``data:image/svg+xml`` images,
so the report needs no plotting library and works on the base install (a run that
stops at the probe gate may never have installed the ``train`` extra). Model text is
hostile: the HTML template escapes every value, SVG text is escaped here, images in
``<img>`` cannot run script, and a Content-Security-Policy forbids scripts outright.

Usage::

    from advisor.report import write_report
    html_path, md_path = write_report(plan, Path("runs/gsm-mini"))
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.charts import Plot, as_interval, as_number, bar_chart, line_chart
from advisor.render import answer_text, render
from pipelines.artifacts import write_text
from pipelines.stages import TRAIN_KINDS

#: Rows per sample table (accepted, rejected), at most one per prompt while prompts last.
SAMPLE_ROWS = 10
#: Model text longer than this is cut in tables.
TEXT_LIMIT = 600
#: log_history keys drawn as curves, one chart each.
CURVE_KEYS = ("loss", "reward", "kl")
#: Metrics that get their own table or plot instead of key/value rows.
SPECIAL_KEYS = {
    "log_history",
    "checkpoints",
    "curation",
    "agreement.pairwise",
    "before",
    "after",
    "difference",
    "ood",
    "control",
    "doctor",
}
RATE_KEY = re.compile(r"(pass@|share|rate|compliance|gate|expected|gain|yield)", re.IGNORECASE)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class StageView:
    name: str
    kind: str
    status: str
    seconds: float | None = None
    summary: str = ""
    stop: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    samples: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


# ---- numbers and text ----


def fmt(key: str, value: Any) -> str:
    """A metric as text: rates as percentages, other floats to 4 significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if RATE_KEY.search(key) and abs(value) <= 1:
            return f"{value:.1%}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if len(value) > 12:
            return f"{len(value)} values"
        return ", ".join(fmt(key, v) for v in value)
    text = str(value)
    return text if len(text) <= 300 else text[:300] + "…"


def pct(value: Any) -> str:
    return f"{value:.1%}" if as_number(value) is not None else "—"


def interval(ci: Any, signed: bool = False) -> str:
    ci = as_interval(ci)
    return (f"{ci[0]:+.1%} to {ci[1]:+.1%}" if signed else f"{ci[0]:.1%} to {ci[1]:.1%}") if ci else ""


def clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= TEXT_LIMIT else f"{text[:TEXT_LIMIT]}… ({len(text) - TEXT_LIMIT} more characters)"


def md_cell(value: Any) -> str:
    """A Markdown table cell: HTML-escaped (viewers render raw HTML), pipes and newlines kept inert."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return text.replace("\r", "").replace("\n", "<br>")


def flatten(metrics: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """Key/value rows for every scalar or short list in ``metrics``, nested keys joined by dots."""
    rows: list[list[str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if name in SPECIAL_KEYS or value is None:
            continue
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        elif not (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            rows.append([name, fmt(name, value)])
    return rows


def _points(rows: list[dict[str, Any]], key: str, x_key: str = "step") -> list[tuple[float, float]]:
    pts = [(as_number(r.get(x_key)), as_number(r.get(key))) for r in rows if isinstance(r, dict)]
    return [(x, y) for x, y in pts if x is not None and y is not None]


# ---- reading the run directory ----


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing or unreadable (the report still renders)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def read_stages(plan: Any, run_dir: Path) -> list[StageView]:
    """One view per plan stage, with its manifest and metrics where the stage finished."""
    views = []
    for stage, name in zip(plan.stages, plan.stage_dirs(), strict=True):
        folder = run_dir / name
        view = StageView(name=name, kind=stage.kind, status="off" if not stage.enabled else "not run", dir=folder)
        manifest_path = folder / "manifest.json"
        if stage.enabled and manifest_path.exists():
            manifest = _read(manifest_path) or {"status": "unreadable manifest"}
            view.status = manifest.get("status", "done")
            view.seconds = manifest.get("seconds")
            view.summary = manifest.get("summary") or ""
            attempts = as_number(manifest.get("attempts"))
            if attempts and attempts > 1 and as_number(view.seconds) is not None:
                this = as_number(manifest.get("attempt_seconds"))
                last = f", the last {this:.1f}s" if this is not None else ""
                view.notes.append(f"resumed: {view.seconds:.1f}s over {attempts:.0f} attempts{last}")
            view.stop = manifest.get("stop")
            view.metrics = _read(folder / "metrics.json") or {}
        views.append(view)
    return views


def pick_samples(path: Path, accepted: Any, limit: int = SAMPLE_ROWS) -> tuple[list[dict], list[dict]]:
    """Up to ``limit`` accepted and rejected rows of a JSONL file, one per prompt while prompts last."""
    picked: tuple[list[dict], list[dict]] = ([], [])
    spare: tuple[list[dict], list[dict]] = ([], [])
    seen: tuple[set, set] = (set(), set())
    if not path.exists():
        return picked
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            ok = accepted(row) if isinstance(row, dict) else None
            if ok is None:
                continue
            side = 0 if ok else 1
            key = row.get("prompt_index", row.get("question"))
            if len(picked[side]) < limit and key not in seen[side]:
                seen[side].add(key)
                picked[side].append(row)
            elif len(spare[side]) < limit:
                spare[side].append(row)
    for side in (0, 1):
        picked[side].extend(spare[side][: limit - len(picked[side])])
    return picked


# ---- per-stage sections ----


def sample_section(view: StageView) -> None:
    if view.kind in ("probe", "rejection_sample"):
        good, bad = pick_samples(view.dir / "samples.jsonl", lambda r: r.get("passed"))
        columns = ["prompt", "sample", "reference", "verifier's reason"]
        for title, rows in (("accepted samples", good), ("rejected samples", bad)):
            cells = [
                [
                    clip(r.get("prompt", "")),
                    clip(r.get("sample", "")),
                    clip(r.get("reference", "")),
                    clip(r.get("reason", "")),
                ]
                for r in rows
            ]
            view.samples.append(Table(title, columns, cells))
    elif view.kind == "synthesize":
        good, bad = pick_samples(view.dir / "pairs.jsonl", lambda r: r.get("kept"))
        for title, rows in (("kept pairs", good), ("rejected pairs", bad)):
            cells = []
            for r in rows:
                # synthesize writes "judges": {name: {"pass", "score", "reason"}} and "verdict": {"detail"}
                votes = _d(r.get("judges") or r.get("votes"))
                lines = [str(_d(r.get("verdict")).get("detail", ""))] if _d(r.get("verdict")).get("detail") else []
                for judge, v in votes.items():
                    if isinstance(v, dict):
                        passed = v.get("pass", v.get("passed"))
                        label = "abstain" if passed is None else "pass" if passed else "fail"
                        lines.append(f"{judge}: {label} {fmt('score', v.get('score'))} {v.get('reason', '')}")
                cells.append([clip(r.get("question", "")), clip(r.get("answer", "")), clip("\n".join(lines))])
            view.samples.append(Table(title, ["question", "answer", "judges' votes"], cells))
    view.samples = [t for t in view.samples if t.rows]


def stage_section(view: StageView) -> None:
    """Tables, notes, plots and samples for one finished stage."""
    m = view.metrics
    rows = flatten(m)
    if rows:
        view.tables.append(Table("metrics", ["metric", "value"], rows))
    agreement = _d(m.get("agreement"))
    if agreement.get("warning"):
        view.notes.append(f"judge agreement: {agreement['warning']}")
    if _d(agreement.get("pairwise")):
        pairs = [[k.replace("|", " vs "), fmt("kappa", v)] for k, v in agreement["pairwise"].items()]
        view.tables.append(Table("pairwise judge agreement (Cohen's kappa)", ["judges", "kappa"], pairs))
    if isinstance(m.get("curation"), list):
        steps = [[str(_d(c).get(k, "")) for k in ("name", "rows_in", "rows_out")] for c in m["curation"]]
        view.tables.append(Table("curation", ["step", "rows in", "rows out"], steps))
    if view.kind == "probe" and m.get("split"):
        what = "the gate and the prompt style" if _d(m.get("compare")) else "the gate"
        view.notes.append(f"{what}: decided on {m['split']} (the base model's pass@1 there)")
    if view.kind in TRAIN_KINDS:
        train_section(view)
    if view.kind == "evaluate":
        evaluate_section(view)
    sample_section(view)


def train_section(view: StageView) -> None:
    m = view.metrics
    history = _rows(m.get("log_history"))
    changes = []
    for key in CURVE_KEYS:
        pts = _points(history, key)
        if not pts:
            continue
        changes.append([key, fmt(key, pts[0][1]), fmt(key, pts[-1][1]), str(len(pts))])
        series = {f"train {key}" if key == "loss" else key: pts}
        if key == "loss" and _points(history, "eval_loss"):
            series["eval loss"] = _points(history, "eval_loss")
        view.plots.append(line_chart(f"{view.name}: {key}", series))
    if changes:
        view.tables.append(Table("training curves", ["value", "first", "last", "logged points"], changes))
    doctor_section(view)
    checkpoints = _rows(m.get("checkpoints"))
    chosen = m.get("chosen_checkpoint")
    digits = re.search(r"(\d+)$", chosen) if isinstance(chosen, str) else None
    chosen_step = float(digits.group(1)) if digits else as_number(chosen)
    if checkpoints:
        # a reward model's checkpoints are scored by pairwise accuracy on held-out pairs
        key = "pairwise_accuracy" if any("pairwise_accuracy" in c for c in checkpoints) else "eval_pass@1"
        label = key.replace("_", " ")
        cells = [
            [str(c.get("step")), pct(c.get(key)), "yes" if as_number(c.get("step")) == chosen_step else ""]
            for c in checkpoints
        ]
        view.tables.append(Table("checkpoints", ["step", label, "chosen"], cells))
        if key == "eval_pass@1":
            view.notes.append(checkpoint_note(_d(m.get("checkpoint_eval"))))
        pts = _points(checkpoints, key)
        if pts:
            view.plots.append(line_chart(f"{view.name}: checkpoint {label}", {label: pts}, True, chosen_step))


def checkpoint_note(info: dict[str, Any]) -> str:
    """Which split chose the checkpoint (the report names every choice's split)."""
    source = info.get("source")
    if not source:
        return "no validation prompts: the last checkpoint was kept, no choice was made"
    return (
        f"checkpoint chosen on {source} ({info.get('prompts')} prompts, greedy pass@1); "
        "data.eval, where the gain is reported, played no part in the choice"
    )


def doctor_section(view: StageView) -> None:
    """The doctor's findings on the stage's history (pipelines.doctor), one row each."""
    findings = _rows(view.metrics.get("doctor"))
    for f in findings:
        if f.get("severity") in ("warn", "error"):
            view.notes.append(f"doctor ({f['severity']}): {f.get('title', f.get('rule'))}")
    if findings:
        cells = [
            [
                str(f.get("severity", "")),
                str(f.get("rule", "")),
                str(_d(f.get("evidence")).get("summary", "")),
                str(f.get("cause", "")),
                str(f.get("fix", "")),
            ]
            for f in findings
        ]
        view.tables.append(
            Table(
                "doctor: findings on the training history",
                ["severity", "rule", "evidence", "likely cause", "fix"],
                cells,
            )
        )


def evaluate_section(view: StageView) -> None:
    m = view.metrics
    rows = []

    def row(label: str, before: Any, after: Any, diff: Any) -> None:
        before, after, diff = _d(before), _d(after), _d(diff)
        change = as_number(diff.get("mean"))
        if change is None and None not in (as_number(after.get("pass@1")), as_number(before.get("pass@1"))):
            change = after["pass@1"] - before["pass@1"]
        ci = interval(diff.get("ci95"), signed=True)
        rows.append(
            [
                label,
                pct(before.get("pass@1")),
                interval(before.get("pass@1_ci95")),
                pct(after.get("pass@1")),
                interval(after.get("pass@1_ci95")),
                ("—" if change is None else f"{change:+.1%}") + (f" ({ci})" if ci else ""),
            ]
        )

    if m.get("before") or m.get("after"):
        row("in-distribution", m.get("before"), m.get("after"), m.get("difference"))
    if _d(m.get("ood")):
        row("out-of-distribution", m["ood"].get("before"), m["ood"].get("after"), m["ood"].get("difference"))
    if _d(m.get("control")):
        c = m["control"]
        row(f"control: {c.get('label', 'control')}", m.get("before"), c.get("after"), c.get("difference"))
    columns = ["split", "before pass@1", "95% CI", "after pass@1", "95% CI", "difference (95% CI)"]
    if rows:
        view.tables.insert(0, Table("pass@1 before and after training", columns, rows))
    for split, data in (("before", m.get("before")), ("after", m.get("after"))):
        if isinstance(data, dict) and data.get("difficulty_histogram"):
            hist = data["difficulty_histogram"]
            view.tables.append(Table(f"difficulty histogram ({split})", BIN_LABELS, [[str(n) for n in hist]]))


BIN_LABELS = [f"{10 * i}–{10 * (i + 1)}%" for i in range(10)]


# ---- the whole run ----


def overview_plots(views: list[StageView]) -> list[Plot]:
    """pass@1 before/after (or the probe alone) and the difficulty histograms."""
    probe = next((v.metrics for v in views if v.kind == "probe" and v.metrics), None)
    ev = next((v.metrics for v in views if v.kind == "evaluate" and v.metrics), None)
    plots = []
    if ev and (_d(ev.get("before")) or _d(ev.get("after"))):
        splits = [("in-distribution", ev)] + ([("out-of-distribution", ev["ood"])] if _d(ev.get("ood")) else [])
        series: dict[str, list] = {"before": [], "after": []}
        errors: dict[str, list] = {"before": [], "after": []}
        for _, data in splits:
            for side in ("before", "after"):
                series[side].append(as_number(_d(data.get(side)).get("pass@1")))
                errors[side].append(_d(data.get(side)).get("pass@1_ci95"))
        if _d(ev.get("control")):
            label = str(ev["control"].get("label", "control"))
            after = _d(ev["control"].get("after"))
            series[label] = [as_number(after.get("pass@1"))] + [None] * (len(splits) - 1)
            errors[label] = [after.get("pass@1_ci95")] + [None] * (len(splits) - 1)
        plots.append(bar_chart("pass@1 before and after training", [s for s, _ in splits], series, errors, top=1.0))
    elif probe and as_number(probe.get("pass@1")) is not None:
        styles = {k: _d(v) for k, v in _d(probe.get("compare")).items()} or {probe.get("style", "probe"): probe}
        series = {"base model": [as_number(s.get("pass@1")) for s in styles.values()]}
        errors = {"base model": [s.get("pass@1_ci95") for s in styles.values()]}
        gate = as_number(probe.get("gate"))
        title = "pass@1 of the base model (probe)"
        plots.append(bar_chart(title, [str(k) for k in styles], series, errors, top=1.0, gate=gate))
    hists = {}
    if probe and probe.get("difficulty_histogram"):
        hists["probe (base model)"] = probe["difficulty_histogram"]
    if ev and _d(ev.get("after")).get("difficulty_histogram"):
        hists["evaluate (after training)"] = ev["after"]["difficulty_histogram"]
    if hists:
        shares = {
            k: [n / max(sum(h), 1) for n in h]
            for k, h in hists.items()
            if isinstance(h, list) and len(h) == len(BIN_LABELS) and all(as_number(n) is not None for n in h)
        }
        if shares:
            title = "per-prompt difficulty: share of prompts by pass rate"
            plots.append(bar_chart(title, [label.replace("–", "-") for label in BIN_LABELS], shares))
    return plots


def headline(views: list[StageView]) -> str:
    stopped = next((v for v in views if v.status == "stopped_at_gate"), None)
    if stopped:
        return f"Stopped at the {stopped.kind} gate. {stopped.stop or ''}".strip()
    ev = next((v.metrics for v in views if v.kind == "evaluate" and v.metrics), None)
    if ev and _d(ev.get("before")) and _d(ev.get("after")):
        diff = _d(ev.get("difference"))
        text = f"pass@1 {pct(ev['before'].get('pass@1'))} before, {pct(ev['after'].get('pass@1'))} after training"
        ci = as_interval(diff.get("ci95"))
        if as_number(diff.get("mean")) is not None and ci:
            verdict = (
                "the interval excludes 0" if ci[0] > 0 or ci[1] < 0 else "the interval includes 0: no clear change"
            )
            text += f"; difference {diff['mean']:+.1%} (95% CI {ci[0]:+.1%} to {ci[1]:+.1%}), {verdict}"
        return text + "."
    pending = [v.name for v in views if v.status == "not run"]
    finished = sum(1 for v in views if v.metrics or v.status == "done")
    return f"Run incomplete: {finished} of {len(views)} stages finished; not run yet: {', '.join(pending) or 'none'}."


def route_context(plan: Any) -> dict[str, Any]:
    from advisor.planner import explain

    info = explain(plan)
    steps = plan.decision or [s for s in info["path"].steps]
    return {
        "route": plan.route,
        "provisional": plan.provisional,
        "summary": info["outcome"].summary,
        "steps": [{"question": s.question, "answer": answer_text(s.answer), "because": s.because} for s in steps],
        "alternatives": info["alternatives"],
        "warnings": list(plan.warnings),
    }


def build_context(plan: Any, run_dir: Path) -> dict[str, Any]:
    views = read_stages(plan, run_dir)
    for view in views:
        if view.metrics:
            stage_section(view)
    probe = next((v.metrics for v in views if v.kind == "probe" and v.metrics), {})
    settled = probe.get("settled_route")
    return {
        "plan": plan,
        "run_dir": str(run_dir),
        "route": route_context(plan),
        "settled": settled,
        "settle_note": f"the probe measured direct vs chain-of-thought prompting and settled the route to {settled}"
        if settled
        else "",
        "headline": headline(views),
        "stages": views,
        "overview": overview_plots(views),
        "cell": md_cell,
    }


def write_report(plan: Any, run_dir: Path) -> tuple[Path, Path]:
    """Write ``run_dir/report.html`` and ``run_dir/report.md`` (atomically) for the stages that exist.

    Args:
        plan: the run's :class:`advisor.plan.Plan` (settled, if the probe settled it).
        run_dir: ``runs/<plan name>``; stage folders that are missing are reported as not run.

    Returns:
        The paths of the HTML and Markdown reports.
    """
    run_dir = Path(run_dir)
    context = build_context(plan, run_dir)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    write_text(html_path, render("report.html.j2", **context))
    write_text(md_path, render("report.md.j2", **context))
    return html_path, md_path
