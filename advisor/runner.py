"""``advisor run``: validate the whole plan, then run its stages in order, resumably.

Each stage writes ``runs/<plan name>/<NN>-<kind>/``: its data, ``metrics.json``,
and last ``manifest.json`` (config hash, input hashes, row counts, timings,
status). A manifest that exists means the stage finished; a re-run skips a stage
whose manifest matches its config and inputs. ``--fresh`` ignores manifests and
``--only KIND`` runs one stage (its inputs must already exist).

A stage is a module in ``pipelines/stages/`` with ``run(ctx) -> StageResult``; the
registry ``pipelines.stages.STAGES`` says which kinds exist and where they live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, GateStop, InputError
from advisor.plan import Plan, dump_plan
from advisor.validate import load_plan
from pipelines.artifacts import fingerprint, read_json, sha256_json, write_json, write_text
from pipelines.context import StageContext, StageResult
from pipelines.stages import RFT_ONLY


class Interrupted(AdvisorError):
    exit_code = 130


def _config_hash(plan: Plan, stage: Any) -> str:
    options = stage.model_dump(mode="json", exclude={"why"})
    shared = plan.model_dump(mode="json", include={"task", "models", "data", "verifier", "compute"})
    return sha256_json({"stage": options, "plan": shared})


def _input_hashes(plan: Plan, plan_dir: Path, earlier_dirs: list[Path]) -> dict[str, str]:
    """Hashes of what a stage may read: data files, local models, and earlier stages' outputs."""
    hashes: dict[str, str] = {}
    for key in ("train", "eval", "validation", "general", "ood_eval"):
        value = getattr(plan.data, key)
        path = (plan_dir / value) if value else None
        if path is not None and path.exists():
            hashes[f"data.{key}"] = fingerprint(path)
    for key in ("base", "teacher"):
        value = getattr(plan.models, key)
        path = (plan_dir / value) if value else None
        if path is not None and path.exists():
            hashes[f"models.{key}"] = fingerprint(path)
    for d in earlier_dirs:
        manifest = d / "manifest.json"
        if manifest.exists():
            hashes[d.name] = sha256_json(read_json(manifest).get("outputs", {}))
    return hashes


def _load_stage(kind: str) -> Callable[[StageContext], StageResult]:
    from pipelines import stages

    return stages.load(kind)


def apply_settled_route(plan: Plan, route: str) -> Plan:
    """The plan after a probe settled a provisional route (cot_helps unknown)."""
    data = plan.model_dump()
    data["route"] = route
    data["provisional"] = False
    data["answers"]["cot_helps"] = "yes" if route == "rft" else "no"
    note = f"probe settled the provisional route to {route} by measuring direct vs chain-of-thought prompting"
    data["warnings"] = [w for w in data["warnings"] if not w.startswith("provisional route")] + [note]
    if route == "sft":
        for s in data["stages"]:
            if s["kind"] in RFT_ONLY or (s["kind"] == "grpo" and s.get("reward") == "verifier"):
                s["enabled"] = False
    return Plan.model_validate(data)


def run_plan(
    plan_file: Path,
    run_dir: Path | None = None,
    only: str | None = None,
    fresh: bool = False,
    console: Any = None,
) -> list[dict[str, Any]]:
    """Validate ``plan_file`` and run (or resume) its stages. Returns one summary row per stage.

    Raises:
        PlanError / InputError: the plan or its inputs are invalid (exit 2).
        GateStop: a gate stopped the pipeline (exit 1).
        StageFailed: a stage could not finish (exit 1).
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    plan = load_plan(plan_file, check_files=True)
    plan_dir = plan_file.resolve().parent
    run_dir = run_dir or Path("runs") / plan.name
    kinds = [s.kind for s in plan.stages]
    if only is not None and only not in kinds:
        raise InputError(f"--only {only!r}: the plan has no such stage (stages: {', '.join(kinds)})")
    stage_dirs = [run_dir / name for name in plan.stage_dirs()]
    summary: list[dict[str, Any]] = []
    try:
        for index, stage in enumerate(plan.stages):
            stage = plan.stages[index]  # the plan may have been settled by an earlier stage
            row = {"stage": stage_dirs[index].name, "kind": stage.kind, "status": "", "seconds": 0.0, "summary": ""}
            summary.append(row)
            if only is not None and stage.kind != only:
                row["status"] = "not selected"
                continue
            if not stage.enabled:
                row["status"] = "off"
                continue
            ctx = StageContext(plan, stage, index, stage_dirs[index], run_dir, plan_dir, console, fresh, stage_dirs)
            config_hash = _config_hash(plan, stage)
            inputs = _input_hashes(plan, plan_dir, [d for d in stage_dirs[:index]])
            manifest_path = ctx.dir / "manifest.json"
            if manifest_path.exists() and not fresh:
                manifest = read_json(manifest_path)
                if manifest.get("config_hash") == config_hash and manifest.get("input_hashes") == inputs:
                    row.update(status="cached", summary=manifest.get("summary", ""))
                    console.print(f"[dim]{ctx.dir.name}: up to date, skipped[/dim]")
                    plan = _after_stage(plan, manifest, run_dir, console)
                    continue
                manifest_path.unlink()
            stage_fn = _load_stage(stage.kind)
            _prepare_dir(ctx.dir, config_hash, inputs, fresh)
            console.rule(f"{ctx.dir.name}")
            earlier = _begin_attempt(ctx.dir)
            started = time.time()
            try:
                result = stage_fn(ctx)
            finally:  # a failed or interrupted attempt's time counts when the stage is resumed
                ctx.release()  # the stage's engines free their memory before the next stage loads
                seconds = time.time() - started
                _end_attempt(ctx.dir, seconds)
            total = sum(a["seconds"] for a in earlier) + seconds
            write_json(ctx.dir / "metrics.json", result.metrics)
            manifest = {
                "stage": ctx.dir.name,
                "kind": stage.kind,
                "status": "stopped_at_gate" if result.stop else "done",
                "config_hash": config_hash,
                "input_hashes": inputs,
                "outputs": {name: _describe_output(path) for name, path in result.outputs.items()},
                "started": started,
                "seconds": round(total, 3),  # every attempt: a resumed stage's earlier work counts
                "attempt_seconds": round(seconds, 3),
                "attempts": len(earlier) + 1,
                "summary": result.summary,
                "stop": result.stop,
                "settled_route": result.settled_route,
            }
            write_json(manifest_path, manifest)  # last: its existence means the stage finished
            row.update(status=manifest["status"], seconds=round(total, 1), summary=result.summary)
            plan = _after_stage(plan, manifest, run_dir, console)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: finished shards are kept; run the same command to resume") from None
    finally:
        _print_summary(console, summary, run_dir)
        _write_report(plan, run_dir, console)
    return summary


def _write_report(plan: Plan, run_dir: Path, console: Any) -> None:
    """report.html and report.md for whatever stages have finished (gate stops included)."""
    if not any((run_dir / name / "manifest.json").exists() for name in plan.stage_dirs()):
        return
    from advisor.report import write_report

    html, _ = write_report(plan, run_dir)
    console.print(f"report: {html}")


def _prepare_dir(folder: Path, config_hash: str, inputs: dict[str, str], fresh: bool) -> None:
    """Keep partial work (shards) only when it was made with the same config and inputs."""
    import shutil

    marker = folder / "started.json"
    expected = {"config_hash": config_hash, "input_hashes": inputs}
    made_with = read_json(marker) if marker.exists() else {}
    if folder.exists() and (fresh or {k: made_with.get(k) for k in expected} != expected):
        shutil.rmtree(folder)
    if not marker.exists():
        write_json(marker, {**expected, "attempts": []})


def _begin_attempt(folder: Path) -> list[dict[str, Any]]:
    """Record a new attempt in ``started.json``; return the earlier ones, each with its seconds.

    An attempt that ended in an exception (Ctrl-C included) recorded its own time. One
    whose process was killed outright did not: it is timed to the last file it wrote
    in the stage folder (its last finished shard or checkpoint), a lower bound.
    """
    marker = folder / "started.json"
    state = read_json(marker)
    attempts = state.get("attempts", [])
    for attempt in attempts:
        if "seconds" not in attempt:
            written = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and p != marker]
            attempt["seconds"] = round(max([attempt["started"], *written]) - attempt["started"], 3)
            attempt["ended"] = "killed; timed to the last file it wrote"
    earlier = list(attempts)
    write_json(marker, {**state, "attempts": [*attempts, {"started": time.time()}]})
    return earlier


def _end_attempt(folder: Path, seconds: float) -> None:
    marker = folder / "started.json"
    state = read_json(marker)
    attempts = state.get("attempts", [])
    if attempts:
        attempts[-1]["seconds"] = round(seconds, 3)
        write_json(marker, {**state, "attempts": attempts})


def _after_stage(plan: Plan, manifest: dict[str, Any], run_dir: Path, console: Any) -> Plan:
    if manifest.get("settled_route") and plan.provisional:
        plan = apply_settled_route(plan, manifest["settled_route"])
        write_text(run_dir / "plan.settled.yaml", dump_plan(plan))
        console.print(f"route settled to [bold]{plan.route}[/bold]; updated plan: {run_dir / 'plan.settled.yaml'}")
    if manifest.get("stop"):
        raise GateStop(manifest["stop"])
    return plan


def _describe_output(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path.name, "sha256": fingerprint(path)}
    if path.is_file() and path.suffix == ".jsonl":
        with open(path) as f:
            info["rows"] = sum(1 for line in f if line.strip())
    return info


def _print_summary(console: Any, rows: list[dict[str, Any]], run_dir: Path) -> None:
    if not rows:
        return
    from rich.table import Table

    table = Table(title=f"run: {run_dir}", title_justify="left")
    for col in ("stage", "status", "time", "result"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["stage"], r["status"] or "stopped", f"{r['seconds']:.1f}s" if r["seconds"] else "", r["summary"]
        )
    console.print(table)
