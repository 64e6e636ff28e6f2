"""``advisor plan``, ``explain`` and ``validate`` through the real CLI (click's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from advisor.cli import main
from advisor.plan import Plan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, input=None):
    return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load(out: Path) -> dict:
    return yaml.safe_load((out / "plan.yaml").read_text())


def test_answers_file_with_only_flowchart_keys_writes_complete_plan(runner, tmp_path):
    answers = write(tmp_path / "a.yaml", "labeled_rows: 250\nverifiable: true\ncot_helps: yes\n")
    out = tmp_path / "out"
    result = run(runner, "plan", "--answers", answers, "--no-input", "--out", out)
    assert result.exit_code == 0, result.output
    data = load(out)
    assert data["route"] == "rft"
    assert [s["kind"] for s in data["stages"]][0] == "probe"
    assert all("kind" in s for s in data["stages"])
    Plan.model_validate(data)
    readme = (out / "README.md").read_text()
    assert "```mermaid" in readme and "advisor run plan.yaml" in readme
    run_sh = out / "run.sh"
    assert run_sh.stat().st_mode & 0o111, "run.sh is executable"
    assert "advisor run plan.yaml" in run_sh.read_text()
    assert "route: rft" in result.output


def test_json_answers_file(runner, tmp_path):
    answers = write(tmp_path / "a.json", json.dumps({"labeled_rows": 200000, "verifiable": False}))
    result = run(runner, "plan", "--answers", answers, "--no-input", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "o")["route"] == "sft"


def test_set_overrides_answers_file(runner, tmp_path):
    answers = write(tmp_path / "a.yaml", "labeled_rows: 250\nverifiable: true\ncot_helps: yes\n")
    result = run(
        runner,
        "plan",
        "--answers",
        answers,
        "--set",
        "cot_helps=no",
        "--set",
        "gpus=2",
        "--no-input",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0, result.output
    data = load(tmp_path / "o")
    assert data["route"] == "sft", "--set cot_helps=no beats the file's yes"
    assert data["compute"]["gpus"] == 2 and data["models"]["backend"] == "vllm"


def test_flags_answer_questions(runner, tmp_path):
    result = run(
        runner,
        "plan",
        "--labeled-rows",
        0,
        "--verifiable",
        "no",
        "--preference-pairs",
        "yes",
        "--task-kind",
        "open_ended",
        "--no-input",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 0, result.output
    data = load(tmp_path / "o")
    assert data["route"] == "rlhf"
    assert [s["kind"] for s in data["stages"]] == ["probe", "dpo", "evaluate"]


def test_interactive_questionnaire_walks_the_path(runner, tmp_path):
    # task kind, labeled rows, verifiable, cot_helps, then accept every other default
    answers = ["code", "250", "yes", "no"] + [""] * 12
    result = run(runner, "plan", "--out", tmp_path / "o", input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "How many labeled rows" in result.output
    assert "Does chain-of-thought reasoning help" in result.output
    assert "preference pairs" not in result.output, "only questions on the path are asked"
    data = load(tmp_path / "o")
    assert data["route"] == "sft" and data["task"]["kind"] == "code" and data["verifier"]["name"] == "code"


def test_interactive_reasks_on_invalid_input(runner, tmp_path):
    answers = ["math", "-5", "lots", "40", "maybe", "yes"] + [""] * 12
    result = run(runner, "plan", "--out", tmp_path / "o", input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("How many labeled rows") == 3, "re-asked after -5 and 'lots'"
    assert "'maybe' is not one of" in result.output
    assert load(tmp_path / "o")["answers"]["labeled_rows"] == 40


def test_interactive_rlhf_asks_preference_pairs(runner, tmp_path):
    answers = ["open_ended", "0", "no", "no"] + [""] * 12
    result = run(runner, "plan", "--out", tmp_path / "o", input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "preference pairs" in result.output
    assert [s["kind"] for s in load(tmp_path / "o")["stages"]] == [
        "probe",
        "rejection_sample",
        "reward_model",
        "grpo",
        "evaluate",
    ]


def test_no_input_lists_every_missing_answer(runner, tmp_path):
    result = run(runner, "plan", "--no-input", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "labeled_rows" in result.output and "verifiable" in result.output and "cot_helps" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists(), "nothing written on error"


def test_no_input_missing_cot_for_middle_band(runner, tmp_path):
    result = run(
        runner, "plan", "--no-input", "--set", "labeled_rows=500", "--set", "verifiable=true", "--out", tmp_path / "o"
    )
    assert result.exit_code == 2
    assert "cot_helps" in result.output and "labeled_rows," not in result.output


BAD_ANSWERS = [
    (
        "labeled_rows: -5\nverifiable: true\n",
        "labeled_rows: Input should be greater than or equal to 0",
        "negative rows",
    ),
    (
        "labeled_rows: 10\nverifiable: perhaps\n",
        "verifiable: Input should be a valid boolean",
        "non-boolean verifiable",
    ),
    ("labeled_rows: 10\nverifiable: true\ncolour: red\n", "colour: unknown answer key", "unknown key"),
    ("labeled_rows: [1, 2\n", "not valid YAML or JSON", "malformed YAML"),
    ("- 1\n- 2\n", "answers must be a mapping", "a list, not a mapping"),
    ("labeled_rows: ten\nverifiable: true\n", "labeled_rows: Input should be a valid integer", "rows not a number"),
]


@pytest.mark.parametrize(("text", "message", "why"), BAD_ANSWERS, ids=[b[2] for b in BAD_ANSWERS])
def test_bad_answers_file_is_one_clear_line_exit_2(runner, tmp_path, text, message, why):
    answers = write(tmp_path / "bad.yaml", text)
    result = run(runner, "plan", "--answers", answers, "--no-input", "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert all(line.startswith("error: ") for line in result.output.strip().splitlines())


def test_missing_answers_file(runner, tmp_path):
    result = run(runner, "plan", "--answers", tmp_path / "nope.yaml", "--no-input")
    assert result.exit_code == 2
    assert "answers file not found" in result.output


def test_malformed_set(runner, tmp_path):
    result = run(runner, "plan", "--set", "labeled_rows", "--no-input")
    assert result.exit_code == 2 and "expected key=value" in result.output


def test_existing_plan_is_not_overwritten_without_force(runner, tmp_path):
    args = ["plan", "--set", "labeled_rows=5", "--set", "verifiable=true", "--no-input", "--out", tmp_path / "o"]
    assert run(runner, *args).exit_code == 0
    (tmp_path / "o" / "plan.yaml").write_text("# my edits\n")
    result = run(runner, *args)
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "o" / "plan.yaml").read_text() == "# my edits\n"
    assert run(runner, *args, "--force").exit_code == 0


def test_example_answers_files_plan_cleanly(runner, tmp_path):
    for example in sorted((REPO / "examples" / "answers").glob("*.yaml")):
        result = run(runner, "plan", "--answers", example, "--no-input", "--out", tmp_path / example.stem)
        assert result.exit_code == 0, (example, result.output)


# ---- explain / validate ----


@pytest.fixture
def plan_dir(runner, tmp_path):
    out = tmp_path / "p"
    result = run(
        runner,
        "plan",
        "--set",
        "labeled_rows=250",
        "--set",
        "verifiable=true",
        "--set",
        "cot_helps=yes",
        "--no-input",
        "--out",
        out,
    )
    assert result.exit_code == 0
    return out


def test_explain_prints_path_route_and_alternatives(runner, plan_dir):
    result = run(runner, "explain", plan_dir / "plan.yaml")
    assert result.exit_code == 0, result.output
    assert "route: rft" in result.output
    assert "labeled_rows = 250" in result.output
    assert "with more than 100000 labeled rows the route would be sft" in result.output


def test_validate_ok_and_missing_data_files(runner, plan_dir):
    assert run(runner, "validate", "--skip-files", plan_dir / "plan.yaml").exit_code == 0
    result = run(runner, "validate", plan_dir / "plan.yaml")
    assert result.exit_code == 2
    assert "data.train: file not found: data/train.jsonl" in result.output
    (plan_dir / "data").mkdir()
    (plan_dir / "data" / "train.jsonl").write_text("{}\n")
    (plan_dir / "data" / "eval.jsonl").write_text("{}\n")
    assert run(runner, "validate", plan_dir / "plan.yaml").exit_code == 0


def test_validate_reports_every_problem_at_once(runner, plan_dir):
    data = yaml.safe_load((plan_dir / "plan.yaml").read_text())
    data["stages"][2]["samples"] = 0
    data["stages"][3]["colour"] = "red"
    data["stages"].append({"kind": "ppo"})
    data["models"]["teacher"] = 7
    data["surprise"] = True
    (plan_dir / "plan.yaml").write_text(yaml.safe_dump(data))
    result = run(runner, "validate", "--skip-files", plan_dir / "plan.yaml")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    text = "\n".join(lines)
    assert "stages[2].samples: must be >= 1 (got 0)" in text
    assert "stages[3].colour: unknown key" in text
    assert "stages[6]: unknown stage kind 'ppo'" in text
    assert "models.teacher:" in text
    assert "surprise: unknown key" in text
    assert len(lines) == 5 and "Traceback" not in text


def test_validate_semantic_problems(runner, plan_dir):
    data = yaml.safe_load((plan_dir / "plan.yaml").read_text())
    data["route"] = "sft"  # contradicts the answers
    data["verifier"]["name"] = "telepathy"
    data["stages"] = data["stages"][::-1]  # evaluate first, probe last
    (plan_dir / "plan.yaml").write_text(yaml.safe_dump(data))
    result = run(runner, "validate", "--skip-files", plan_dir / "plan.yaml")
    assert result.exit_code == 2
    assert "route: 'sft' does not follow from the answers" in result.output
    assert "verifier.name: unknown verifier 'telepathy'" in result.output
    assert "probe must be the first stage" in result.output
    assert "evaluate must be the last stage" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("route: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "a plan must be a YAML mapping"),
        ("", "a plan must be a YAML mapping"),
    ],
    ids=["malformed yaml", "list not mapping", "empty file"],
)
def test_validate_unreadable_plan_is_one_line(runner, tmp_path, text, message):
    path = write(tmp_path / "plan.yaml", text)
    result = run(runner, "validate", path)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_plan_file_exit_2(runner, tmp_path):
    for cmd in ("validate", "explain"):
        result = run(runner, cmd, tmp_path / "missing.yaml")
        assert result.exit_code == 2 and "file not found" in result.output


def test_help_teaches_with_examples(runner):
    result = run(runner, "plan", "--help")
    assert "Examples:" in result.output and "--labeled-rows" in result.output and "--no-input" in result.output


def test_validate_rejects_psft_under_fsdp(runner, plan_dir):
    data = yaml.safe_load((plan_dir / "plan.yaml").read_text())
    data["stages"][3]["kind"] = "psft"
    data["stages"][3].pop("weight_decay")
    data["compute"].update(num_processes=2, distributed="fsdp")
    (plan_dir / "plan.yaml").write_text(yaml.safe_dump(data))
    result = run(runner, "validate", "--skip-files", plan_dir / "plan.yaml")
    assert result.exit_code == 2
    assert "stages[3].kind: psft keeps a full copy of the old policy" in result.output
