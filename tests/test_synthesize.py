"""The synthesize stage: a teacher and a judge panel served by a local OpenAI-compatible server.

The teacher's answers and every judge's votes are scripted, so the kept pairs, the
vetoes and the agreement figures are known in advance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_plan_cli as run
from helpers import write_plan

from pipelines.artifacts import read_jsonl as read
from pipelines.testing.openai_server import OpenAIServer

QUESTIONS = [(1, 2), (3, 4), (5, 6), (7, 8)]


def write_data(folder: Path) -> None:
    with open(folder / "train.jsonl", "w") as f:
        for a, b in QUESTIONS:
            f.write(json.dumps({"question": f"What is {a}+{b}?", "answer": str(a + b)}) + "\n")
        # a row with a gold solution needs no teacher
        f.write(json.dumps({"question": "What is 9+9?", "answer": "18", "solution": "9+9=18 so \\boxed{18}"}) + "\n")
    (folder / "eval.jsonl").write_text(json.dumps({"question": "What is 2+2?", "answer": "4"}) + "\n")


def scripted(messages, model):
    text = messages[-1]["content"]
    if model == "teacher":
        a, b = map(int, re.search(r"What is (\d+)\+(\d+)", text).groups())
        # right for 1+2 and 3+4; wrong for 5+6; for 7+8 right but with a leaked e-mail
        if (a, b) == (5, 6):
            return "\\boxed{12}"
        if (a, b) == (7, 8):
            return "\\boxed{15} (ask bob@corp-mail.com)"
        return f"{a}+{b}={a + b} \\boxed{{{a + b}}}"
    answer = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.S).group(1)
    if model == "judge-a":
        return '{"pass": true, "score": 9, "reason": "looks right"}'  # lenient: passes everything
    if model == "judge-b":
        ok = "12" not in answer
        return f'```json\n{{"pass": {str(ok).lower()}, "score": {8 if ok else 2}, "reason": "checked"}}\n```'
    return "I cannot decide, sorry."  # judge-c: garbage, an abstention


def make_plan(folder: Path, base_url: str, **stage) -> Path:
    write_data(folder)
    return write_plan(
        folder,
        keep=("synthesize",),
        stage={"samples": 1, "judge_max_new_tokens": 64, **stage},
        labeled_rows=5,
        verifiable=True,
        task_kind="math",
        base_model="teacher",
        teacher_model="teacher",
        judge_models=["judge-a", "judge-b", "judge-c"],
        backend="openai",
        base_url=base_url,
        train_data="train.jsonl",
        eval_data="eval.jsonl",
        name="synth-test",
    )


@pytest.fixture
def server():
    with OpenAIServer(reply=scripted, model_name=("teacher", "judge-a", "judge-b", "judge-c")) as s:
        yield s


def test_panel_keeps_agreed_pairs_verifier_vetoes_and_curation_drops_emails(tmp_path, server):
    result = run(make_plan(tmp_path, server.base_url), tmp_path)
    assert result.exit_code == 0, result.output
    stage = tmp_path / "runs" / "synth-test" / "01-synthesize"
    pairs = read(stage / "pairs.jsonl")
    assert [p["kept"] for p in pairs] == [True, True, False, True]
    wrong = pairs[2]
    assert wrong["verdict"]["detail"].startswith("vetoed: verifier fails")
    judges = wrong["judges"]
    assert judges["judge1:judge-a"]["pass"] is True, "the lenient judge passed it; the verifier still vetoes"
    assert judges["judge2:judge-b"]["pass"] is False
    assert judges["judge3:judge-c"]["pass"] is None, "garbage is an abstention, not a fail"
    assert all(p["teacher"] == "teacher" for p in pairs)
    sft = read(stage / "sft.jsonl")
    completions = [r["completion"] for r in sft]
    assert not any("@" in c for c in completions), "curation removed the row with an e-mail address"
    assert len([r for r in sft if r["source"] == "teacher"]) == 2
    assert [r["completion"] for r in sft if r["source"] == "gold"] == ["9+9=18 so \\boxed{18}"]
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["candidates"] == 4 and metrics["kept"] == 3 and metrics["kept_after_curation"] == 2
    assert metrics["gold_rows"] == 1
    names = [c["name"] for c in metrics["curation"]]
    assert names[0] == "remove_sensitive"
    assert metrics["curation"][0]["rows_in"] == 3 and metrics["curation"][0]["rows_out"] == 2


def test_without_required_verifier_votes_alone_decide(tmp_path, server):
    result = run(make_plan(tmp_path, server.base_url, require_verifier=False, aggregation="unanimous"), tmp_path)
    assert result.exit_code == 0, result.output
    pairs = read(tmp_path / "runs" / "synth-test" / "01-synthesize" / "pairs.jsonl")
    # unanimous over judge-a, judge-b and the verifier (judge-c abstains): 5+6 fails on judge-b and verifier
    assert [p["kept"] for p in pairs] == [True, True, False, True]
    assert pairs[2]["verdict"]["detail"].startswith("unanimous: 1 pass, 2 fail, 1 abstain")


def test_agreement_is_reported_with_landis_koch_reading(tmp_path, server):
    result = run(make_plan(tmp_path, server.base_url), tmp_path)
    assert result.exit_code == 0, result.output
    agreement = json.loads((tmp_path / "runs" / "synth-test" / "01-synthesize" / "metrics.json").read_text())[
        "agreement"
    ]
    # judge-b and the verifier agree on every pair (3 pass, 1 fail): Cohen's kappa 1.0
    assert agreement["pairwise"]["judge2:judge-b|verifier"] == pytest.approx(1.0)
    # judge-a passes everything: its kappa with anyone is 0 (no agreement beyond chance)
    assert agreement["pairwise"]["judge1:judge-a|verifier"] == pytest.approx(0.0)
    assert agreement["per_rater"]["judge3:judge-c"]["abstain_rate"] == 1.0
    assert agreement["reading"] in ("poor", "slight", "fair", "moderate", "substantial", "almost perfect")


def test_bad_rubric_is_caught_before_any_model_runs(tmp_path, server):
    plan = make_plan(tmp_path, server.base_url, rubric="Grade {{ answr }}")
    result = run(plan, tmp_path)
    assert result.exit_code == 2
    assert "stages[0].rubric: rubric does not render" in result.output
    assert server.requests == []


def teacher_with_new_questions(messages, model):
    text = messages[-1]["content"]
    if model == "teacher" and "Write one new question" in text:
        return "What is 10+11?"  # the same new question every time: de-duplicated to one
    return scripted(messages, model)


def test_new_prompts_from_seed_examples_are_deduplicated_and_judged(tmp_path):
    with OpenAIServer(reply=teacher_with_new_questions, model_name=("teacher", "judge-a", "judge-b", "judge-c")) as s:
        result = run(make_plan(tmp_path, s.base_url, new_prompts=3, require_verifier=False), tmp_path)
    assert result.exit_code == 0, result.output
    pairs = read(tmp_path / "runs" / "synth-test" / "01-synthesize" / "pairs.jsonl")
    new = [p for p in pairs if p["question"] == "What is 10+11?"]
    assert len(new) == 1, "three identical new questions become one prompt"
    assert new[0]["reference"] is None and new[0]["judges"]["verifier"]["pass"] is None, (
        "no gold: the verifier abstains"
    )
    assert new[0]["kept"] is True, "without a required verifier the judges' majority decides"
