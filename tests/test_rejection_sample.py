"""The rejection_sample stage: keep verified, distinct samples; build SFT rows and DPO pairs.

Two halves. The selection (:func:`select`) is fed known samples, right, wrong and rephrased
duplicates, so every count is known in advance. The stage itself runs end to end through a
real engine (the ``hf`` backend on a tiny model trained on a mixture of right, wrong and
duplicate answers, sampled at temperature 1), and what it wrote is checked against its own
samples, re-verified here.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import run_plan_cli as run
from helpers import write_plan

import verifiers
from pipelines.artifacts import read_jsonl as read
from pipelines.data import render_prompts
from pipelines.stages.rejection_sample import path_key, select
from pipelines.testing.tinymodel import train_char_model

PROMPTS = [(2, 3), (4, 5), (7, 1), (9, 9)]


def replies(a: int, b: int) -> list[str]:
    """Per prompt, 2 distinct right paths, a rephrased duplicate of the first, a wrong one.

    For 9+9 every reply is wrong, so it has no correct sample.
    """
    if (a, b) == (9, 9):
        return [f"{a}+{b}={a + b + 1}\n{a + b + 1}"] * 4
    return [
        f"{a}+{b}={a + b}\n{a + b}",  # right, path 1
        f"{b}+{a}={a + b}\n{a + b}",  # right, path 2
        f"{a} + {b} = {a + b}\n{a + b}",  # right, same equations as path 1: a duplicate path
        f"{a}+{b}={a + b - 1}\n{a + b - 1}",  # wrong
    ]


# -- selection, on known samples ------------------------------------------------------------


def cycled_samples(per_prompt: int = 8) -> list[dict]:
    """Each prompt's replies cycled ``per_prompt`` times, graded by the plan's exact verifier."""
    verifier = verifiers.get("exact")
    rows = []
    for i, (a, b) in enumerate(PROMPTS):
        options = replies(a, b)
        for j in range(per_prompt):
            text = options[j % 4]
            verdict = verifier.verify(text, str(a + b))
            rows.append(
                {
                    "prompt_index": i,
                    "sample_index": j,
                    "prompt": f"What is {a}+{b}?",
                    "sample": text,
                    "passed": verdict.passed,
                    "gradable": True,
                    "score": verdict.score,
                }  # fmt: skip
            )
    return rows


def options(**changes):
    return SimpleNamespace(**{"keep": "verified", "dedupe": True, "max_per_prompt": 10, **changes})


def test_keeps_distinct_verified_paths_and_builds_pairs():
    samples = cycled_samples()
    assert sum(s["passed"] for s in samples) == 18, "3 prompts x 6 right; 9+9: none"
    picked = select(samples, len(PROMPTS), options(), "math")
    assert picked["distinct"] == [2, 2, 2, 0], "the rephrased derivation is not a new path"
    kept = picked["kept"]
    assert len(kept) == 6 and {s["prompt_index"] for s in kept} == {0, 1, 2}
    assert all(s["passed"] for s in kept)
    pairs = picked["pairs"]
    assert len(pairs) == 6
    for p in pairs:
        right = str(sum(PROMPTS[p["prompt_index"]]))
        assert p["chosen"].splitlines()[-1] == right and p["rejected"].splitlines()[-1] != right


def test_cap_per_prompt():
    picked = select(cycled_samples(), len(PROMPTS), options(max_per_prompt=1), "math")
    assert len(picked["kept"]) == 3


def test_control_run_keeps_unverified_samples():
    picked = select(cycled_samples(), len(PROMPTS), options(keep="all", dedupe=False, max_per_prompt=8), "math")
    assert len(picked["kept"]) == 32, "control: every sample, right or wrong, becomes training data"


def test_path_key_treats_rephrased_derivations_as_one():
    assert path_key("3+4=7 so 7*2=14", "math") == path_key("First 3 + 4 = 7. Then 7 * 2 = 14.", "math")
    assert path_key("4+3=7, 7*2=14", "math") != path_key("3+4=7, 7*2=14", "math")
    assert path_key("Hello   World", "classification") == path_key("hello world", "classification")


# -- the stage, through a real engine -------------------------------------------------------


def write_data(folder: Path) -> None:
    with open(folder / "train.jsonl", "w") as f:
        for a, b in PROMPTS:
            f.write(json.dumps({"question": f"What is {a}+{b}?", "answer": str(a + b)}) + "\n")


@pytest.fixture(scope="module")
def mixture_policy(tmp_path_factory) -> Path:
    """A tiny model trained on every reply of every prompt: sampling gives a mix of them."""
    style = "cot"  # rejection sampling without a probe uses the default prompt style
    examples = []
    for a, b in PROMPTS:
        prompt = render_prompts([{"question": f"What is {a}+{b}?"}], "question", style, "math", False)[0]
        examples += [(prompt, reply) for reply in replies(a, b)]
    out = tmp_path_factory.mktemp("rs-policy")
    train_char_model(out, examples, steps=250, hidden_size=64, layers=2, batch_size=32, chat=True, num_threads=1)
    return out


def make_plan(folder: Path, model: Path, **stage) -> Path:
    write_data(folder)
    plan = write_plan(
        folder,
        keep=("rejection_sample",),
        stage={"samples": 8, "shard_size": 2, "max_new_tokens": 16, **stage},
        labeled_rows=4,
        verifiable=True,
        task_kind="math",
        verifier="exact",
        base_model=str(model),
        backend="hf",
        train_data="train.jsonl",
        eval_data="train.jsonl",
        name="rs-test",
    )
    data = yaml.safe_load(plan.read_text())
    data["models"]["chat"] = True
    plan.write_text(yaml.safe_dump(data, sort_keys=False))
    return plan


def test_stage_keeps_what_its_own_samples_justify(tmp_path, mixture_policy):
    result = run(make_plan(tmp_path, mixture_policy), tmp_path)
    assert result.exit_code == 0, result.output
    stage = tmp_path / "runs" / "rs-test" / "01-rejection_sample"
    samples = read(stage / "samples.jsonl")
    assert len(samples) == 32 and {(s["prompt_index"], s["sample_index"]) for s in samples} == {
        (p, j) for p in range(4) for j in range(8)
    }
    verifier = verifiers.get("exact")
    for s in samples:  # each verdict is the verifier's on the generated text
        assert s["passed"] == verifier.verify(s["sample"], str(sum(PROMPTS[s["prompt_index"]]))).passed
    passed = [s for s in samples if s["passed"]]
    assert passed and len(passed) < 32, "the sampled mixture holds right and wrong answers"

    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["samples"] == 32 and metrics["pass_rate"] == pytest.approx(len(passed) / 32)
    paths = [{path_key(s["sample"], "math") for s in passed if s["prompt_index"] == i} for i in range(4)]
    assert metrics["prompts_without_correct_examples"] == [i for i in range(4) if not paths[i]]
    assert metrics["distinct_correct_per_prompt"] == pytest.approx(sum(map(len, paths)) / 4)

    sft = read(stage / "sft.jsonl")
    assert len(sft) == sum(map(len, paths)), "one row per distinct verified path"
    for i in range(4):
        rows = [r for r in sft if r["prompt_index"] == i]
        assert {path_key(r["completion"], "math") for r in rows} == paths[i]
    pairs = read(stage / "pairs.jsonl")
    for p in pairs:
        right = str(sum(PROMPTS[p["prompt_index"]]))
        assert verifier.verify(p["chosen"], right).passed and not verifier.verify(p["rejected"], right).passed


def test_stage_control_run_keeps_every_sample(tmp_path, mixture_policy):
    plan = make_plan(tmp_path, mixture_policy, keep="all", dedupe=False, max_per_prompt=8)
    assert run(plan, tmp_path).exit_code == 0
    stage = tmp_path / "runs" / "rs-test" / "01-rejection_sample"
    nonempty = [s for s in read(stage / "samples.jsonl") if s["sample"].strip()]
    assert len(read(stage / "sft.jsonl")) == len(nonempty) > 0
