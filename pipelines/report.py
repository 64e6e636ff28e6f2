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

    from pipelines.report import write_report
    html_path, md_path = write_report(plan, Path("runs/gsm-mini"))
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.render import answer_text, render
from pipelines.artifacts import write_text

#: Rows per sample table (accepted, rejected), at most one per prompt while prompts last.
SAMPLE_ROWS = 10
#: Model text longer than this is cut in tables.
TEXT_LIMIT = 600
#: log_history keys drawn as curves, one chart each.
CURVE_KEYS = ("loss", "reward", "kl")
TRAIN_KINDS = ("sft", "psft", "dpo", "grpo", "rloo", "reward_model")
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
}
RATE_KEY = re.compile(r"(pass@|share|rate|compliance|gate|expected|gain|yield)", re.IGNORECASE)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Plot:
    title: str
    uri: str
    width: int
    height: int


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
    return f"{value:.1%}" if _number(value) is not None else "—"


def interval(ci: Any, signed: bool = False) -> str:
    ci = _ci(ci)
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


# ---- SVG charts ----

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2")
WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 48, 34
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) * 0.1 or 0.5), hi + (abs(hi) * 0.1 or 0.5)
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [start + i * step for i in range(round((end - start) / step) + 1)]


def _text(x: float, y: float, s: str, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    s = html.escape(XML_INVALID.sub("", s))  # a control character would make the whole SVG unreadable
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" {extra}>{s}</text>'


def _frame(title: str, names: list[str], yticks: list[float], percent: bool) -> tuple[list[str], Any]:
    """Title, legend, y grid and labels; returns the elements and a value-to-pixel function."""
    y0, y1 = yticks[0], yticks[-1]
    bottom = HEIGHT - BOTTOM

    def ypx(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - TOP)

    out = [_text(WIDTH / 2, 18, title, size=13, extra='font-weight="bold"')]
    x = LEFT
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="28" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(_text(x + 14, 37, name, anchor="start"))
        x += 24 + 6.5 * len(name)
    for t in yticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ypx(t):.1f}" y2="{ypx(t):.1f}" stroke="#ddd"/>')
        out.append(_text(LEFT - 6, ypx(t) + 4, f"{t:.0%}" if percent else f"{t:.3g}", anchor="end", size=10))
    out.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="#444"/>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}" stroke="#444"/>')
    return out, ypx


def _plot(title: str, body: list[str]) -> Plot:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>'
    )
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return Plot(title, uri, WIDTH, HEIGHT)


def bar_chart(
    title: str,
    categories: list[str],
    series: dict[str, list[float | None]],
    errors: dict[str, list[Any]] | None = None,
    top: float | None = None,
    gate: float | None = None,
) -> Plot:
    """Grouped bars in percent, one group per category, optional (lo, hi) error bars and a gate line."""
    errors = {name: [_ci(e) for e in es] for name, es in (errors or {}).items()}
    values = [v for vs in series.values() for v in vs if v is not None]
    highs = [e[1] for es in errors.values() for e in es if e]
    yticks = _ticks(0.0, top if top is not None else max(values + highs + [0.01]))
    out, ypx = _frame(title, list(series), yticks, percent=True)
    group = (WIDTH - LEFT - RIGHT) / len(categories)
    bar = min(group * 0.8 / len(series), 90)
    if gate is not None:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ypx(gate):.1f}" y2="{ypx(gate):.1f}" ')
        out[-1] += 'stroke="#e45756" stroke-dasharray="4 3"/>'
        out.append(
            _text(WIDTH - RIGHT, ypx(gate) - 4, f"gate {gate:.0%}", anchor="end", size=10, extra='fill="#e45756"')
        )
    for c, category in enumerate(categories):
        gx = LEFT + c * group + (group - bar * len(series)) / 2 - group * 0.1
        out.append(_text(LEFT + (c + 0.5) * group, HEIGHT - BOTTOM + 16, category, size=10))
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c]
            if v is None:
                continue
            x = gx + group * 0.1 + s * bar
            color = PALETTE[s % len(PALETTE)]
            out.append(f'<rect x="{x:.1f}" y="{ypx(v):.1f}" width="{bar * 0.92:.1f}" ')
            out[-1] += f'height="{max(ypx(0) - ypx(v), 0):.1f}" fill="{color}"/>'
            e = (errors.get(name) or [None] * len(categories))[c]
            if e:
                mid = x + bar * 0.46
                out.append(f'<path d="M{mid:.1f},{ypx(e[0]):.1f}V{ypx(e[1]):.1f}M{mid - 4:.1f},{ypx(e[0]):.1f}')
                out[-1] += f'h8M{mid - 4:.1f},{ypx(e[1]):.1f}h8" stroke="#222" fill="none"/>'
            if len(categories) * len(series) <= 12:
                out.append(_text(x + bar * 0.46, min(ypx(v), ypx(e[1]) if e else ypx(v)) - 4, f"{v:.0%}", size=10))
    return _plot(title, out)


def line_chart(
    title: str, series: dict[str, list[tuple[float, float]]], percent: bool = False, mark: float | None = None
) -> Plot:
    """Lines over steps; ``mark`` draws a dashed vertical line (the chosen checkpoint)."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xticks = _ticks(min(xs), max(xs))
    yticks = _ticks(0.0, max(max(ys), 0.01)) if percent else _ticks(min(ys), max(ys))
    out, ypx = _frame(title, list(series), yticks, percent)
    x0, x1 = xticks[0], xticks[-1]

    def xpx(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    for t in xticks:
        out.append(_text(xpx(t), HEIGHT - BOTTOM + 16, f"{t:g}", size=10))
    out.append(_text(WIDTH - RIGHT, HEIGHT - 4, "step", anchor="end", size=10))
    if mark is not None:
        out.append(f'<line x1="{xpx(mark):.1f}" x2="{xpx(mark):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" ')
        out[-1] += 'stroke="#e45756" stroke-dasharray="4 3"/>'
        out.append(_text(xpx(mark) + 4, TOP + 10, "chosen", anchor="start", size=10, extra='fill="#e45756"'))
    for i, pts in enumerate(series.values()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{xpx(x):.1f},{ypx(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        if len(pts) <= 40:
            out += [f'<circle cx="{xpx(x):.1f}" cy="{ypx(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
    return _plot(title, out)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _points(rows: list[dict[str, Any]], key: str, x_key: str = "step") -> list[tuple[float, float]]:
    pts = [(_number(r.get(x_key)), _number(r.get(key))) for r in rows if isinstance(r, dict)]
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


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) is not None for v in value):
        return float(value[0]), float(value[1])
    return None


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
    checkpoints = _rows(m.get("checkpoints"))
    chosen = m.get("chosen_checkpoint")
    digits = re.search(r"(\d+)$", chosen) if isinstance(chosen, str) else None
    chosen_step = float(digits.group(1)) if digits else _number(chosen)
    if checkpoints:
        # a reward model's checkpoints are scored by pairwise accuracy on held-out pairs
        key = "pairwise_accuracy" if any("pairwise_accuracy" in c for c in checkpoints) else "eval_pass@1"
        label = key.replace("_", " ")
        cells = [
            [str(c.get("step")), pct(c.get(key)), "yes" if _number(c.get("step")) == chosen_step else ""]
            for c in checkpoints
        ]
        view.tables.append(Table("checkpoints", ["step", label, "chosen"], cells))
        pts = _points(checkpoints, key)
        if pts:
            view.plots.append(line_chart(f"{view.name}: checkpoint {label}", {label: pts}, True, chosen_step))


def evaluate_section(view: StageView) -> None:
    m = view.metrics
    rows = []

    def row(label: str, before: Any, after: Any, diff: Any) -> None:
        before, after, diff = _d(before), _d(after), _d(diff)
        change = _number(diff.get("mean"))
        if change is None and None not in (_number(after.get("pass@1")), _number(before.get("pass@1"))):
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
                series[side].append(_number(_d(data.get(side)).get("pass@1")))
                errors[side].append(_d(data.get(side)).get("pass@1_ci95"))
        if _d(ev.get("control")):
            label = str(ev["control"].get("label", "control"))
            after = _d(ev["control"].get("after"))
            series[label] = [_number(after.get("pass@1"))] + [None] * (len(splits) - 1)
            errors[label] = [after.get("pass@1_ci95")] + [None] * (len(splits) - 1)
        plots.append(bar_chart("pass@1 before and after training", [s for s, _ in splits], series, errors, top=1.0))
    elif probe and _number(probe.get("pass@1")) is not None:
        styles = {k: _d(v) for k, v in _d(probe.get("compare")).items()} or {probe.get("style", "probe"): probe}
        series = {"base model": [_number(s.get("pass@1")) for s in styles.values()]}
        errors = {"base model": [s.get("pass@1_ci95") for s in styles.values()]}
        gate = _number(probe.get("gate"))
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
            if isinstance(h, list) and len(h) == len(BIN_LABELS) and all(_number(n) is not None for n in h)
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
        ci = _ci(diff.get("ci95"))
        if _number(diff.get("mean")) is not None and ci:
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
