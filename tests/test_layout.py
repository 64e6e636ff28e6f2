"""The tree's architecture, checked: imports stack one way, one stage registry, examples that work.

- verifiers/ imports nothing else of the project;
- pipelines/ imports only advisor's leaf modules (errors, plan, render, flowchart);
- the stage registry, the plan's stage union and the stage modules agree;
- every shipped answers file plans and validates.
"""

from __future__ import annotations

import ast
import importlib
import typing
from pathlib import Path

import pytest
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
ADVISOR_LEAVES = {"advisor", "advisor.errors", "advisor.plan", "advisor.render", "advisor.flowchart"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at the top or inside a function (lazy imports count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # ``from advisor import cli`` imports advisor.cli
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def layering_violations(root: Path) -> list[str]:
    """``file:line imports module`` for each import that runs against the layers."""
    bad = []
    for package, allowed in (("verifiers", lambda m: False), ("pipelines", lambda m: m in ADVISOR_LEAVES)):
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                if (
                    top == "advisor"
                    and not allowed(module)
                    and _is_module(root, module)
                    or package == "verifiers"
                    and top == "pipelines"
                ):
                    bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


def _is_module(root: Path, name: str) -> bool:
    """``from advisor.plan import Plan`` also yields ``advisor.plan.Plan``: keep only real modules."""
    path = root / Path(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def test_imports_stack_one_way():
    assert layering_violations(ROOT) == [], "verifiers imports nothing of the project; pipelines only advisor's leaves"


def test_an_upward_import_is_caught(tmp_path):
    """The checker itself: a deliberate pipelines -> advisor.runner import (lazy, inside a function) fails."""
    for package in ("advisor", "pipelines", "verifiers"):
        (tmp_path / package).mkdir()
    (tmp_path / "advisor" / "runner.py").write_text("")
    (tmp_path / "advisor" / "plan.py").write_text("")
    (tmp_path / "pipelines" / "ok.py").write_text("from advisor.plan import Plan\n")
    (tmp_path / "pipelines" / "bad.py").write_text("def f():\n    from advisor.runner import run_plan\n")
    (tmp_path / "verifiers" / "bad.py").write_text("import pipelines.data\n")
    assert sorted(layering_violations(tmp_path)) == [
        "pipelines/bad.py:2 imports advisor.runner",
        "verifiers/bad.py:1 imports pipelines.data",
    ]


def test_stage_registry_plan_union_and_modules_agree():
    from advisor import plan as plan_module
    from pipelines.stages import STAGES

    union = typing.get_args(typing.get_args(plan_module.Stage)[0])
    union_kinds = [typing.get_args(cls.model_fields["kind"].annotation)[0] for cls in union]
    assert union_kinds == list(STAGES), "the plan's stage union lists the registry's kinds, in order"
    assert tuple(STAGES) == plan_module.STAGE_KINDS
    for cls in union:
        kind = cls.model_fields["kind"].default
        entry = STAGES[kind]
        assert callable(importlib.import_module(entry.module).run), f"{kind}: its module has run(ctx)"
        missing = [k for k in entry.knobs if k not in cls.model_fields]
        assert not missing, f"{kind}: explain shows knobs the options model lacks: {missing}"


EXAMPLES = sorted((ROOT / "examples" / "answers").glob("*.yaml"))


@pytest.mark.parametrize("answers", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_shipped_answers_file_plans_and_validates(answers, tmp_path):
    out = tmp_path / answers.stem
    planned = run_cli("plan", "--answers", answers, "--no-input", "--out", out, cwd=tmp_path)
    assert planned.exit_code == 0, planned.output
    validated = run_cli("validate", "--skip-files", out / "plan.yaml", cwd=tmp_path)
    assert validated.exit_code == 0, validated.output
