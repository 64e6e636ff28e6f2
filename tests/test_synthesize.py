"""The synthesize stage: a teacher and a judge panel, real models behind a real server.

Each model is a tiny model that has memorized one reply per prompt (``tests/panel.py``: the
teacher is right, wrong, or right with a leaked API key; the judges are a lenient one, a
strict one and one that never gives a label), served through transformers over the OpenAI
API. The teacher's
answers and every judge's votes are therefore known in advance, and so are the kept pairs,
the vetoes and the agreement figures, while the stage really generates over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_plan_cli as run
from helpers import write_plan
from panel import GOLD, JUDGES, KEY, NEW, QUESTIONS, RUBRIC, operands, panel_models

from pipelines.artifacts import read_jsonl as read
from pipelines.testing.model_server import ModelServer


def write_data(folder: Path) -> None:
    with open(folder / "train.jsonl", "w") as f:
        for q in QUESTIONS:
            a, b = operands(q)
            f.write(json.dumps({"question": q, "answer": str(a + b)}) + "\n")
        f.write(json.dumps({"question": GOLD, "answer": "18", "solution": "9+9=18 so \\boxed{18}"}) + "\n")
    (folder / "eval.jsonl").write_text(json.dumps({"question": "What is 2+2?", "answer": "4"}) + "\n")


@pytest.fixture(scope="module")
def server(memorized):
    with ModelServer(panel_models(memorized)) as s:
        yield s


def make_plan(folder: Path, base_url: str, **stage) -> Path:
    write_data(folder)
    return write_plan(
        folder,
        keep=("synthesize",),
        stage={
            "samples": 1,
            "judge_max_new_tokens": 32,
            "temperature": 0.3,
            "max_new_tokens": 48,
            "rubric": RUBRIC,
            **stage,
        },  # fmt: skip
        labeled_rows=5,
        verifiable=True,
        task_kind="math",
        base_model="teacher",
        teacher_model="teacher",
        judge_models=list(JUDGES),
        backend="openai",
        base_url=base_url,
        train_data="train.jsonl",
        eval_data="eval.jsonl",
        name="synth-test",
    )


def test_panel_keeps_agreed_pairs_verifier_vetoes_and_curation_drops_secrets(tmp_path, server):
    before = dict(server.generated)
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
    assert not any(KEY in c for c in completions), "curation removed the row with an API key"
    assert len([r for r in sft if r["source"] == "teacher"]) == 2
    assert [r["completion"] for r in sft if r["source"] == "gold"] == ["9+9=18 so \\boxed{18}"]
    asked = {name: server.generated[name] - before[name] for name in before}
    assert asked == {"teacher": 4, "judge-a": 4, "judge-b": 4, "judge-c": 4}, "every pair was really judged"
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
    before = len(server.requests)
    plan = make_plan(tmp_path, server.base_url, rubric="Grade {{ answr }}")
    result = run(plan, tmp_path)
    assert result.exit_code == 2
    assert "stages[0].rubric: rubric does not render" in result.output
    assert len(server.requests) == before


def test_new_prompts_from_seed_examples_are_deduplicated_and_judged(tmp_path, server):
    result = run(make_plan(tmp_path, server.base_url, new_prompts=3, require_verifier=False), tmp_path)
    assert result.exit_code == 0, result.output
    pairs = read(tmp_path / "runs" / "synth-test" / "01-synthesize" / "pairs.jsonl")
    new = [p for p in pairs if p["question"] == NEW]
    assert len(new) == 1, "three identical new questions become one prompt"
    assert new[0]["reference"] is None and new[0]["judges"]["verifier"]["pass"] is None, (
        "no gold: the verifier abstains"
    )
    assert new[0]["kept"] is True, "without a required verifier the judges' majority decides"


def test_engines_are_released_one_at_a_time(tmp_path, server, monkeypatch):
    """The teacher's engine is shut down before any judge loads, and each judge's before the
    next: a vLLM engine holds its KV cache (a share of GPU memory) until it is closed."""
    import pipelines.stages.synthesize as synthesize

    events = []
    real = synthesize.generator_for

    def tracked(ctx, model, *args, **kwargs):
        gen = real(ctx, model, *args, **kwargs)
        events.append(("open", model))
        gen.close = lambda: events.append(("close", model))
        return gen

    monkeypatch.setattr(synthesize, "generator_for", tracked)
    assert run(make_plan(tmp_path, server.base_url), tmp_path).exit_code == 0
    assert events == [
        ("open", "teacher"),
        ("close", "teacher"),
        *((kind, judge) for judge in JUDGES for kind in ("open", "close")),
    ]
