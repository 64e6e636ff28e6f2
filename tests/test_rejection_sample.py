"""The rejection_sample stage: keep verified, distinct samples; build SFT rows and DPO pairs.

The policy is a scripted OpenAI-compatible server whose replies cycle through known
right, wrong and duplicate answers, so every count below is known in advance.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from helpers import run_plan_cli as run
from helpers import write_plan

from pipelines.artifacts import read_jsonl as read
from pipelines.stages.rejection_sample import path_key
from pipelines.testing.openai_server import OpenAIServer

PROMPTS = [(2, 3), (4, 5), (7, 1), (9, 9)]


def write_data(folder: Path) -> None:
    with open(folder / "train.jsonl", "w") as f:
        for a, b in PROMPTS:
            f.write(json.dumps({"question": f"What is {a}+{b}?", "answer": str(a + b)}) + "\n")


def cycling_policy():
    """Per prompt, the 8 replies cycle: 2 distinct right paths, a rephrased duplicate, wrong ones.

    For prompt 9+9 every reply is wrong, so it has no correct sample.
    """
    counters: dict[tuple[int, int], itertools.count] = {}

    def reply(messages):
        a, b = map(int, re.search(r"What is (\d+)\+(\d+)", messages[-1]["content"]).groups())
        i = next(counters.setdefault((a, b), itertools.count()))
        if (a, b) == (9, 9):
            return f"{a}+{b}={a + b + 1}\n{a + b + 1}"
        options = [
            f"{a}+{b}={a + b}\n{a + b}",  # right, path 1
            f"{b}+{a}={a + b}\n{a + b}",  # right, path 2
            f"{a} + {b} = {a + b}\n{a + b}",  # right, same equations as path 1: a duplicate path
            f"{a}+{b}={a + b - 1}\n{a + b - 1}",  # wrong
        ]
        return options[i % 4]

    return reply


def make_plan(folder: Path, base_url: str, **stage) -> Path:
    write_data(folder)
    return write_plan(
        folder,
        keep=("rejection_sample",),
        stage={"samples": 8, "shard_size": 2, **stage},
        labeled_rows=4,
        verifiable=True,
        task_kind="math",
        verifier="exact",
        base_model="scripted",
        backend="openai",
        base_url=base_url,
        train_data="train.jsonl",
        eval_data="train.jsonl",
        name="rs-test",
    )


def test_keeps_distinct_verified_paths_and_builds_pairs(tmp_path):
    with OpenAIServer(reply=cycling_policy(), model_name="scripted") as server:
        result = run(make_plan(tmp_path, server.base_url), tmp_path)
    assert result.exit_code == 0, result.output
    stage = tmp_path / "runs" / "rs-test" / "01-rejection_sample"
    metrics = json.loads((stage / "metrics.json").read_text())
    # 3 prompts x 8 samples: 6 right each (2 distinct paths), 2 wrong; 9+9: all 8 wrong
    assert metrics["samples"] == 32
    assert metrics["pass_rate"] == 18 / 32
    assert metrics["prompts_without_correct"] == 1 and metrics["prompts_without_correct_examples"] == [3]
    assert metrics["distinct_correct_per_prompt"] == 6 / 4
    sft = read(stage / "sft.jsonl")
    assert len(sft) == 6, "two distinct correct paths per solvable prompt"
    assert all(row["completion"].splitlines()[-1] == str(sum(PROMPTS[row["prompt_index"]])) for row in sft)
    assert {"prompt", "completion"} <= set(sft[0])
    pairs = read(stage / "pairs.jsonl")
    assert len(pairs) == 6
    for p in pairs:
        right = str(sum(PROMPTS[p["prompt_index"]]))
        assert p["chosen"].splitlines()[-1] == right and p["rejected"].splitlines()[-1] != right


def test_cap_per_prompt(tmp_path):
    with OpenAIServer(reply=cycling_policy(), model_name="scripted") as server:
        result = run(make_plan(tmp_path, server.base_url, max_per_prompt=1), tmp_path)
    assert result.exit_code == 0, result.output
    sft = read(tmp_path / "runs" / "rs-test" / "01-rejection_sample" / "sft.jsonl")
    assert len(sft) == 3


def test_control_run_keeps_unverified_samples(tmp_path):
    with OpenAIServer(reply=cycling_policy(), model_name="scripted") as server:
        result = run(make_plan(tmp_path, server.base_url, keep="all", dedupe=False, max_per_prompt=8), tmp_path)
    assert result.exit_code == 0, result.output
    sft = read(tmp_path / "runs" / "rs-test" / "01-rejection_sample" / "sft.jsonl")
    assert len(sft) == 32, "control: every sample, right or wrong, becomes training data"


def test_path_key_treats_rephrased_derivations_as_one():
    assert path_key("3+4=7 so 7*2=14", "math") == path_key("First 3 + 4 = 7. Then 7 * 2 = 14.", "math")
    assert path_key("4+3=7, 7*2=14", "math") != path_key("3+4=7, 7*2=14", "math")
    assert path_key("Hello   World", "classification") == path_key("hello world", "classification")
