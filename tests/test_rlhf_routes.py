"""RLHF plans end to end: the support-tone example plans, validates and runs on tiny models;
bad judge or reward-model input stops validation with one line and exit 2, before any compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "answers" / "support-tone.yaml"


def planned(tmp_path: Path, model: Path) -> Path:
    """``advisor plan`` on the shipped support-tone answers, with a tiny base model and judge."""
    out = tmp_path / "support-tone"
    result = run_cli(
        "plan", "--answers", EXAMPLE, "--no-input", "--out", out,
        "--set", f"base_model={model}", "--set", f"judge_models={model}", cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = out / "data"
    data.mkdir()
    rows = [{"question": f"{n}: my order is late", "chosen": f"Sorry {n}.", "rejected": "NO."} for n in "abcdef"]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "eval.jsonl").write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows[:3]))
    return out / "plan.yaml"


def edit(plan: Path, change) -> Path:
    data = yaml.safe_load(plan.read_text())
    change(data)
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    return plan


def test_support_tone_plans_a_judge_that_validates(tmp_path, tiny_model_dir):
    plan = planned(tmp_path, tiny_model_dir)
    data = yaml.safe_load(plan.read_text())
    assert data["route"] == "rlhf" and [s["kind"] for s in data["stages"]] == ["probe", "dpo", "evaluate"]
    assert data["verifier"]["name"] == "judge" and data["verifier"]["options"]["model"] == [str(tiny_model_dir)]
    result = run_cli("validate", plan, cwd=tmp_path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "why, change, expected",
    [
        (
            "a rubric naming a variable the judge never gets",
            lambda d: d["verifier"]["options"].update(rubric="{{ questoin }}"),
            "verifier.options: rubric does not render: 'questoin' is undefined",
        ),
        (
            "a judge model folder that is not there cannot load",
            lambda d: d["verifier"]["options"].update(model=["./no-such-judge"]),
            "judge model folder not found: ",
        ),
        (
            "a causal LM is not a reward model",
            lambda d: d.update(verifier={"name": "reward_model", "options": {"model": d["models"]["base"]}}),
            "is not a sequence classifier (architectures: LlamaForCausalLM)",
        ),
    ],
)
def test_bad_judge_or_reward_model_is_one_line_exit_2(tmp_path, tiny_model_dir, why, change, expected):
    plan = edit(planned(tmp_path, tiny_model_dir), change)
    result = run_cli("run", plan, cwd=tmp_path)
    assert result.exit_code == 2, (why, result.output)
    problems = [line for line in result.output.splitlines() if "verifier" in line]
    assert len(problems) == 1 and expected in problems[0], (why, result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "support-tone" / "runs").exists(), "caught before any stage ran"


@pytest.mark.slow
def test_support_tone_runs_on_tiny_models(tmp_path, tiny_model_dir):
    """A random tiny judge writes unreadable replies: every grade abstains, and the run still finishes."""

    def small(d):
        d["stages"][0].update(samples=2, max_new_tokens=6, gate=0.0, shard_size=8)
        d["stages"][1].update(max_steps=2, batch_size=2, lora="no")
        d["verifier"]["options"].update(max_new_tokens=6)
        d["compute"]["generation_batch_size"] = 8

    plan = edit(planned(tmp_path, tiny_model_dir), small)
    result = run_cli("run", plan, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    metrics = json.loads(next((tmp_path / "run").glob("*-evaluate/metrics.json")).read_text())
    pref = metrics["preference"]
    assert pref["pairs"] == 6 and pref["scorer"] == "judge" and pref["optimised"] == "preference pairs (dpo)"
    assert pref["judged_pairs"] == 0 and pref["win_rate"] is None, "abstentions are not wins or losses"
    assert metrics["after"]["ungradable_samples"] == 6
    assert (tmp_path / "run" / "report.html").exists()


@pytest.mark.slow
def test_grpo_can_take_the_judge_as_its_reward(tmp_path, tiny_model_dir):
    """The training process builds the judge's own backend (verifiers cannot): GRPO runs against it."""

    def grpo(d):
        d["stages"][0].update(samples=2, max_new_tokens=4, gate=0.0)
        d["stages"][1] = {"kind": "grpo", "lr": 1e-4, "max_steps": 1, "batch_size": 2, "num_generations": 2,
                          "max_new_tokens": 4, "lora": "no", "general_mix": 0.0}  # fmt: skip
        d["verifier"]["options"].update(max_new_tokens=4)

    plan = edit(planned(tmp_path, tiny_model_dir), grpo)
    result = run_cli("run", plan, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    job = json.loads(next((tmp_path / "run").glob("*-grpo/job.json")).read_text())
    assert job["reward"]["verifier"] == "judge" and job["reward"]["options"]["backend"] == "hf"
