"""``compute.threads``, the validation split held out of ``data.train``, and checkpoint pruning.

Threads: the default is what the machine can give each computing process (its cores
divided by ``num_processes``, or ``OMP_NUM_THREADS`` when the user set it), and the
setting reaches torch in generation and training, the ranks' environment and the
verifiers' worker counts. Splits: without ``data.validation`` a seeded share of the
training prompts chooses checkpoints, never a ``data.eval`` prompt, and every stage
that trains leaves those prompts out. Pruning: only the newest checkpoint keeps its
optimizer state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from advisor.plan import Compute, Plan, available_cores
from pipelines.artifacts import write_json, write_jsonl
from pipelines.context import StageContext
from pipelines.data import VALIDATION_MIN_ROWS, training_splits

# ---------------------------------------------------------------- threads


def test_threads_default_to_the_cores_each_process_can_have(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = available_cores()
    assert Compute().threads_per_process() == cores
    assert Compute(num_processes=2).threads_per_process() == max(1, cores // 2), "two ranks share the cores"
    assert Compute(num_processes=10 * cores).threads_per_process() == 1, "never below one thread"
    assert Compute(threads=3, num_processes=2).threads_per_process() == 3, "the plan's setting wins"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert Compute().threads_per_process() == 1, "a user's OMP_NUM_THREADS is a choice, kept"
    assert Compute(threads=2).threads_per_process() == 2
    with pytest.raises(ValueError):
        Compute(threads=0)


def test_hf_generator_sets_torch_threads(tiny_model_dir):
    import torch

    from pipelines.generation.hf import HFGenerator

    before = torch.get_num_threads()
    try:
        HFGenerator(str(tiny_model_dir), threads=1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads must be >= 1"):
            HFGenerator(str(tiny_model_dir), threads=0)
    finally:
        torch.set_num_threads(before)


def test_ranks_get_their_share_of_threads():
    from pipelines.training.launch import rank_environment

    env = rank_environment({"threads": 1})
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    assert rank_environment({}).get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS"), "no setting: unchanged"


class RecordingVerifier:
    """Passes every sample and records the ``workers`` each batch was given."""

    name = "recording"

    def __init__(self) -> None:
        self.workers: list[int | None] = []

    def verify_batch(self, responses, references, workers=None):
        from verifiers.base import passed

        self.workers.append(workers)
        return [passed("ok", extracted=r) for r in responses]


class EchoGenerator:
    def generate(self, prompts, n=1, **kwargs):
        return [[str(p)] * n for p in prompts]


# ---------------------------------------------------------------- plans on disk


def rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"question": f"{i}+1=", "answer": str(i + 1)} for i in range(start, start + n)]


def make_plan(folder: Path, train: list[dict], eval_rows: list[dict], validation: list[dict] | None = None, **compute):
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "eval.jsonl", eval_rows)
    data = {"train": "train.jsonl", "eval": "eval.jsonl"}
    if validation is not None:
        write_jsonl(folder / "validation.jsonl", validation)
        data["validation"] = "validation.jsonl"
    return Plan.model_validate(
        {
            "name": "splits",
            "task": {"kind": "math"},
            "answers": {"labeled_rows": len(train), "verifiable": True, "cot_helps": "no"},
            "route": "sft",
            "models": {"base": "unused", "chat": False},
            "data": data,
            "verifier": {"name": "exact"},
            "compute": compute,
            "stages": [
                {"kind": "probe", "prompt_template": "{{ question }}"},
                {"kind": "rejection_sample", "samples": 1, "shard_size": 100},
                {"kind": "sft"},
            ],
        }
    )


def context(plan: Plan, folder: Path, index: int) -> StageContext:
    run_dir = folder / "runs"
    dirs = [run_dir / name for name in plan.stage_dirs()]
    write_json(dirs[0] / "metrics.json", {"style": "direct"})
    write_json(dirs[0] / "manifest.json", {"status": "done"})
    dirs[index].mkdir(parents=True, exist_ok=True)
    return StageContext(plan, plan.stages[index], index, dirs[index], run_dir, folder, Console(quiet=True), False, dirs)


def test_sampling_passes_the_thread_count_to_the_verifier(tmp_path):
    from pipelines.sampling import sample_and_verify

    plan = make_plan(tmp_path, rows(4), rows(2, 100), threads=1)
    ctx = context(plan, tmp_path, 1)
    verifier = RecordingVerifier()
    out = sample_and_verify(ctx, EchoGenerator(), verifier, ["a", "b"], ["a", "b"], tmp_path / "s", 2, ctx.stage, "x")
    assert len(out) == 4 and verifier.workers == [1], "compute.threads sizes the verification pool"


# ---------------------------------------------------------------- validation split


def test_validation_is_held_out_of_train_seeded_and_never_an_eval_prompt(tmp_path):
    # the first 10 training prompts are also eval prompts: they may be trained on, never validate
    plan = make_plan(tmp_path, rows(50), rows(10) + rows(5, 200))
    splits = training_splits(plan.data, tmp_path)
    held = {r["question"] for r in splits.validation}
    assert len(held) == 10 and len(splits.train) == 40, "20% of 50 rows"
    assert not held & {r["question"] for r in rows(10)}, "no eval prompt validates"
    assert not held & {r["question"] for r in splits.train}, "training leaves the validation prompts out"
    assert splits.validation_source.startswith("data.train (held out: 10 of 50 rows, seed 0)")
    again = training_splits(plan.data, tmp_path)
    assert again == splits, "every stage sees the same split"


def test_duplicates_of_a_validation_prompt_leave_training_too(tmp_path):
    train = rows(20) + rows(20)  # every prompt twice
    splits = training_splits(make_plan(tmp_path, train, rows(2, 500)).data, tmp_path)
    held = {r["question"] for r in splits.validation}
    assert len(splits.validation) == len(held) == 8
    assert len(splits.train) == 40 - 16 and not held & {r["question"] for r in splits.train}


def test_explicit_validation_wins_and_training_drops_its_prompts(tmp_path):
    plan = make_plan(tmp_path, rows(30), rows(5, 100), validation=rows(3))
    splits = training_splits(plan.data, tmp_path)
    assert splits.validation_source == "data.validation" and len(splits.validation) == 3
    assert len(splits.train) == 27 and "0+1=" not in {r["question"] for r in splits.train}


def test_too_few_training_rows_hold_nothing_out(tmp_path):
    plan = make_plan(tmp_path, rows(VALIDATION_MIN_ROWS - 1), rows(5, 100))
    splits = training_splits(plan.data, tmp_path)
    assert splits.validation == [] and splits.validation_source is None and len(splits.train) == 9


def test_checkpoints_are_chosen_on_the_held_out_prompts_not_on_eval(tmp_path):
    from pipelines.stages.train import eval_set, load_sft_rows, no_validation_reason

    plan = make_plan(tmp_path, rows(50), rows(20, 100))
    ctx = context(plan, tmp_path, 2)
    prompts, refs, source = eval_set(ctx)
    assert len(prompts) == 10 and source.startswith("data.train (held out")
    assert not set(prompts) & {r["question"] for r in rows(20, 100)}, "data.eval plays no part"
    sft_rows, _ = load_sft_rows(ctx)
    assert len(sft_rows) == 40 and not set(prompts) & {r["prompt"] for r in sft_rows}

    small = make_plan(tmp_path, rows(5), rows(20, 100))
    assert eval_set(context(small, tmp_path, 2)) == ([], [], None), "no fallback to data.eval"
    assert "data.eval is never used" in no_validation_reason([])


def test_rejection_sampling_leaves_validation_out_and_limit_samples_seeded(tmp_path):
    from pipelines.stages.rejection_sample import load_prompts

    plan = make_plan(tmp_path, rows(50), rows(20, 100))
    held = {r["question"] for r in training_splits(plan.data, tmp_path).validation}
    train_rows, prompts, _ = load_prompts(context(plan, tmp_path, 1))
    assert len(train_rows) == 40 and not held & set(prompts)

    data = plan.model_dump()
    data["stages"][1]["limit"] = 7
    limited = Plan.model_validate(data)
    first = load_prompts(context(limited, tmp_path, 1))[1]
    assert len(first) == 7 and set(first) <= set(prompts), "a sample of the training prompts"
    assert load_prompts(context(limited, tmp_path, 1))[1] == first, "seeded: the same sample every run"
    data["stages"][1]["seed"] = 1
    assert load_prompts(context(Plan.model_validate(data), tmp_path, 1))[1] != first, "another seed, another sample"


# ---------------------------------------------------------------- checkpoints on disk


def fake_checkpoint(folder: Path, step: int) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (ckpt / name).write_bytes(b"x")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def test_only_the_newest_checkpoint_keeps_its_optimizer_state(tmp_path):
    from pipelines.training.job import prune_training_state

    old, mid, new = (fake_checkpoint(tmp_path, s) for s in (2, 4, 6))
    partial = tmp_path / "checkpoint-8"  # being written: no trainer_state.json yet, left alone
    partial.mkdir()
    (partial / "optimizer.pt").write_bytes(b"x")
    removed = prune_training_state(tmp_path)
    assert len(removed) == 6, "optimizer, scheduler, RNG state of the two older checkpoints"
    weights_only = ["model.safetensors", "trainer_state.json", "training_args.bin"]
    for ckpt in (old, mid):
        assert sorted(p.name for p in ckpt.iterdir()) == weights_only
    assert (new / "optimizer.pt").exists() and (new / "rng_state.pth").exists(), "a resume starts here"
    assert (partial / "optimizer.pt").exists()
