"""Every problem in a plan, found before any compute: ``advisor validate`` and ``advisor run``.

The schema (:mod:`advisor.plan`) catches wrong types, unknown keys and out-of-range
values. This module adds what the schema cannot see: the route against the answers,
stage order, files and model folders, the verifier (imported, its options bound to
its constructor's signature) and judge rubrics. Every problem is reported at once,
one line each, as ``field.path: reason``::

    plan, problems = check_plan(Path("plan.yaml"), check_files=True)
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import PlanError
from advisor.flowchart import walk
from advisor.plan import Plan, load_plan_data, parse_plan
from pipelines.judging import rubric_problem


def verifier_problems(plan: Plan, base_dir: Path | None = None) -> list[str]:
    """The plan's verifier: known, importable, and its options accepted by its constructor.

    A judge's or reward model's ``model`` is resolved against the plan's folder first, so
    its constructor checks the real folder (a judge's rubric renders, its model folder
    exists; a reward model folder holds a sequence classifier), before any model loads.
    """
    from pipelines.generation.base import BACKENDS
    from pipelines.sampling import verifier_options
    from verifiers.registry import REGISTRY, option_problems

    name = plan.verifier.name
    field = "verifier.name" if name not in REGISTRY else "verifier.options"
    prefix = f"verifier {name!r}: "
    options = verifier_options(plan, base_dir) if name in REGISTRY else plan.verifier.options
    problems = [f"{field}: {p.removeprefix(prefix)}" for p in option_problems(name, options)]
    if name == "judge":
        backend = options.get("backend")
        if backend is not None and backend not in BACKENDS:
            problems.append(f"verifier.options.backend: must be one of {', '.join(BACKENDS)} (got {backend!r})")
        if not options.get("model"):
            problems.append("verifier.options.model: the judge needs a model (or list models.judges)")
    return problems


def semantic_problems(plan: Plan, base_dir: Path | None = None, check_files: bool = False) -> list[str]:
    """Problems pydantic cannot see: route vs answers, stage order, files, verifier names."""
    problems: list[str] = []
    path = walk(plan.answers.model_dump())
    if path.missing:
        problems.append(f"answers.{path.missing}: required by the flowchart for these answers")
    elif path.route != plan.route and not (path.outcome and path.outcome.provisional):
        problems.append(
            f"route: {plan.route!r} does not follow from the answers (the flowchart gives {path.route!r}); "
            "fix the answers or re-run advisor plan"
        )
    problems += verifier_problems(plan, base_dir)
    kinds = [s.kind for s in plan.stages]
    for i, s in enumerate(plan.stages):
        if s.kind == "probe" and i != 0:
            problems.append(f"stages[{i}].kind: probe must be the first stage (it gates the rest)")
        if s.kind == "evaluate" and i != len(plan.stages) - 1:
            problems.append(f"stages[{i}].kind: evaluate must be the last stage")
        if (
            s.kind in ("grpo", "rloo")
            and getattr(s, "reward", "verifier") == "reward_model"
            and "reward_model" not in kinds[:i]
        ):
            problems.append(f"stages[{i}].reward: 'reward_model' needs a reward_model stage before it")
        if s.kind == "psft" and plan.compute.distributed == "fsdp" and plan.compute.num_processes > 1:
            problems.append(
                f"stages[{i}].kind: psft keeps a full copy of the old policy, which FSDP shards away; use ddp or deepspeed"
            )
        if s.kind == "synthesize" and not plan.models.teacher:
            problems.append(f"stages[{i}]: synthesize needs models.teacher")
        if s.kind == "synthesize" and s.rubric is not None:
            problem = rubric_problem(s.rubric)
            if problem:
                problems.append(f"stages[{i}].rubric: {problem}")
    if plan.models.backend == "openai" and not plan.models.base_url:
        problems.append("models.base_url: required when models.backend is 'openai'")
    if check_files:
        base = base_dir or Path.cwd()
        for key in ("train", "eval", "validation", "general", "ood_eval"):
            value = getattr(plan.data, key)
            if value and _looks_local(value) and not (base / value).exists():
                problems.append(f"data.{key}: file not found: {value}")
        for key in ("base", "teacher"):
            value = getattr(plan.models, key)
            if value and _looks_local(value) and not (base / value).exists():
                problems.append(f"models.{key}: model directory not found: {value}")
    return problems


def _looks_local(value: str) -> bool:
    """A local path (``./x``, ``/x``, ``x.jsonl``), not a hub id like ``org/name``."""
    return value.startswith((".", "/", "~")) or Path(value).suffix in (".jsonl", ".json", ".parquet", ".csv")


def check_plan(path: Path, check_files: bool = False) -> tuple[Plan | None, list[str]]:
    """Parse and check a plan file; return the plan (if it parsed) and every problem found."""
    plan, problems = parse_plan(load_plan_data(path))
    if plan is None:
        return None, problems
    return plan, semantic_problems(plan, path.parent, check_files)


def load_plan(path: Path, check_files: bool = False) -> Plan:
    """Load a plan, raising :class:`PlanError` that lists every problem."""
    plan, problems = check_plan(path, check_files)
    if problems:
        lines = [f"{path}: {p}" for p in problems]
        raise PlanError("\n".join(lines), problems=lines)
    assert plan is not None
    return plan
